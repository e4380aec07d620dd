from __future__ import annotations

import hmac
from unittest import mock

import pytest

from apps.keys.models import API_KEY_PREFIX, MANAGEMENT_KEY_PREFIX
from apps.keys.tokens import secret_digest, secret_generate, secret_lookup, secret_matches


def tampered(secret: str) -> str:
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


def test_it_generates_secrets_with_the_visible_prefix_and_lookup():
    new = secret_generate(visible_prefix=API_KEY_PREFIX)
    assert new.secret.startswith(f"{API_KEY_PREFIX}{new.lookup_prefix}")
    assert len(new.secret) == len(API_KEY_PREFIX) + 12 + 40
    assert secret_lookup(new.secret, visible_prefix=API_KEY_PREFIX) == new.lookup_prefix


def test_it_never_generates_the_same_secret_twice():
    secrets = {secret_generate(visible_prefix=API_KEY_PREFIX).secret for _ in range(200)}
    assert len(secrets) == 200


def test_it_keys_the_digest_with_the_pepper_not_a_plain_hash(settings):
    new = secret_generate(visible_prefix=API_KEY_PREFIX)
    settings.API_KEY_PEPPER = "another-pepper-" + "z" * 30
    assert secret_digest(new.secret) != new.digest


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "anv-",
        "sk-abc",
        "anv-0123456789ab",  # no body
        "anv-0123456789ab" + "X" * 39,  # body one short
        "anv-0123456789AB" + "a" * 40,  # lookup must be lowercase hex
        "anv-0123456789ab" + "a" * 39 + "!",
        "anv-0123456789ab" + "a" * 40 + "\n",
        "ANV-0123456789ab" + "a" * 40,
        None,
        42,
    ],
)
def test_it_refuses_malformed_secrets(secret):
    assert secret_lookup(secret, visible_prefix=API_KEY_PREFIX) is None


def test_it_tells_the_two_kinds_apart():
    management = secret_generate(visible_prefix=MANAGEMENT_KEY_PREFIX).secret
    assert secret_lookup(management, visible_prefix=API_KEY_PREFIX) is None
    assert secret_lookup(management, visible_prefix=MANAGEMENT_KEY_PREFIX) is not None


def test_it_compares_with_hmac_compare_digest():
    new = secret_generate(visible_prefix=API_KEY_PREFIX)
    with mock.patch("apps.keys.tokens.hmac.compare_digest", wraps=hmac.compare_digest) as spy:
        assert secret_matches(new.secret, new.digest)
        assert not secret_matches(tampered(new.secret), new.digest)
    assert spy.call_count == 2
    assert spy.call_args_list[0].args == (new.digest, new.digest)
