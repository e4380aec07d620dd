"""``recent_api_key``: the key this process last accepted for a secret, which the gateway may
start a request's hold on while it reads the key again. Only for that key's own secret, only
while the copy passes every check, and gone once a fresh read refuses the key."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from apps.keys import auth
from apps.keys.auth import aapi_key_authenticate, api_key_authenticate, recent_api_key
from apps.keys.models import ApiKey
from apps.keys.services import api_key_revoke

pytestmark = pytest.mark.django_db(transaction=True)  # the async read is another thread's

authenticate = async_to_sync(aapi_key_authenticate)


@pytest.fixture(autouse=True)
def _nothing_recent():
    auth._recent.clear()
    yield
    auth._recent.clear()


def wrong(secret: str) -> str:
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


def test_it_knows_only_keys_this_process_accepted_from_async_code(alice_key):
    key, secret = alice_key
    assert recent_api_key(secret=secret) is None
    assert api_key_authenticate(secret=secret).ok  # the portal's sync reads do not count
    assert recent_api_key(secret=secret) is None
    assert authenticate(secret=secret).ok
    assert recent_api_key(secret=secret).pk == key.pk


def test_it_answers_only_the_keys_own_secret(alice_key):
    _, secret = alice_key
    assert authenticate(secret=secret).ok
    assert recent_api_key(secret=wrong(secret)) is None
    assert not authenticate(secret=wrong(secret)).ok
    assert recent_api_key(secret=secret) is not None  # a wrong secret drops nothing


def test_it_forgets_a_key_a_fresh_read_refused(alice_key):
    key, secret = alice_key
    assert authenticate(secret=secret).ok
    api_key_revoke(key=key)
    assert recent_api_key(secret=secret) is not None  # only a guess, until read again
    assert authenticate(secret=secret).refusal == auth.Refusal.REVOKED
    assert recent_api_key(secret=secret) is None


def test_it_judges_its_copy_like_a_fresh_read(alice_key):
    key, secret = alice_key
    assert authenticate(secret=secret).ok
    expired = copy.copy(auth._recent[key.lookup_prefix])  # the cache's entries are shared
    expired.expires_at = timezone.now() - dt.timedelta(seconds=1)
    auth._recent[key.lookup_prefix] = expired
    assert recent_api_key(secret=secret) is None


def test_it_keeps_at_most_recent_max_keys(alice_key, monkeypatch):
    monkeypatch.setattr(auth, "RECENT_MAX", 2)
    key, secret = alice_key
    others = []
    for number in range(2):
        copy = ApiKey.objects.get(pk=key.pk)
        copy.lookup_prefix = f"{number:012x}"
        others.append(copy)
    assert authenticate(secret=secret).ok
    for copy in others:  # two more keys accepted later
        auth._note_recent(f"anv-{copy.lookup_prefix}{'x' * 40}", auth.AuthResult(key=copy))
    assert list(auth._recent) == [copy.lookup_prefix for copy in others]
    assert recent_api_key(secret=secret) is None
