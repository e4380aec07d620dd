from __future__ import annotations

import datetime as dt
import hmac
from decimal import Decimal
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from apps.keys.auth import Refusal, aapi_key_authenticate, api_key_authenticate, bearer_secret
from apps.keys.cache import cache_key
from apps.keys.models import ApiKey
from apps.keys.services import api_key_archive, api_key_change_limits, api_key_revoke
from apps.keys.tests.conftest import past

pytestmark = pytest.mark.django_db


def test_it_accepts_a_valid_key_with_grant_owner_and_limits_loaded(
    alice_key, django_assert_num_queries
):
    key, secret = alice_key
    result = api_key_authenticate(secret=secret)
    assert result.ok and result.status == 200 and result.refusal is None
    with django_assert_num_queries(0):
        assert result.key.pk == key.pk
        assert result.key.grant.identifier == "alice-grant"
        assert result.key.owner.username == "alice"
        assert (result.key.monthly_limit, result.key.total_limit) == (None, None)


@pytest.mark.parametrize(
    "secret", ["", "Bearer x", "anv-short", "sk-" + "a" * 50, "anv-" + "ü" * 52]
)
def test_it_refuses_malformed_secrets_without_a_query(world, secret, django_assert_num_queries):
    with django_assert_num_queries(0):
        result = api_key_authenticate(secret=secret)
    assert result.refusal == Refusal.MALFORMED and result.status == 401


def test_it_refuses_an_unknown_key(world):
    result = api_key_authenticate(secret="anv-0123456789ab" + "a" * 40)
    assert result.refusal == Refusal.UNKNOWN and result.status == 401
    assert result.message == "Invalid API key."


def test_it_refuses_a_known_lookup_with_the_wrong_body(alice_key):
    _, secret = alice_key
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert api_key_authenticate(secret=wrong).refusal == Refusal.UNKNOWN
    # … also once the real key sits in the cache.
    assert api_key_authenticate(secret=secret).ok
    assert api_key_authenticate(secret=wrong).refusal == Refusal.UNKNOWN


def test_it_compares_digests_with_hmac_compare_digest(alice_key):
    key, secret = alice_key
    with mock.patch("apps.keys.tokens.hmac.compare_digest", wraps=hmac.compare_digest) as spy:
        assert api_key_authenticate(secret=secret).ok
    spy.assert_called_once()
    assert key.digest in spy.call_args.args


def test_it_refuses_an_expired_key(alice_key):
    key, secret = alice_key
    ApiKey.objects.filter(pk=key.pk).update(expires_at=past())
    result = api_key_authenticate(secret=secret)
    assert result.refusal == Refusal.EXPIRED and result.status == 401


def test_it_refuses_a_cached_key_once_it_expires(alice_key):
    _, secret = alice_key
    assert api_key_authenticate(secret=secret).ok
    later = timezone.now() + dt.timedelta(days=settings.API_KEY_DEFAULT_DAYS, minutes=1)
    with mock.patch("apps.keys.auth.timezone.now", return_value=later):
        assert api_key_authenticate(secret=secret).refusal == Refusal.EXPIRED


def test_it_refuses_a_management_key_as_the_wrong_kind(
    alice_management_key, django_assert_num_queries
):
    _, secret = alice_management_key
    with django_assert_num_queries(0):
        result = api_key_authenticate(secret=secret)
    assert result.refusal == Refusal.WRONG_KIND and result.status == 403
    assert "management key" in result.message


def test_it_serves_the_second_request_from_the_cache(alice_key, django_assert_num_queries):
    _, secret = alice_key
    assert api_key_authenticate(secret=secret).ok
    with django_assert_num_queries(0):
        assert api_key_authenticate(secret=secret).ok


def test_it_refuses_a_revoked_key_on_the_very_next_request(alice_key, run_on_commit):
    key, secret = alice_key
    assert api_key_authenticate(secret=secret).ok  # now cached
    api_key_revoke(key=key)
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED


def test_it_refuses_an_archived_key_on_the_very_next_request(alice_key, run_on_commit):
    key, secret = alice_key
    assert api_key_authenticate(secret=secret).ok
    api_key_archive(key=key)
    assert api_key_authenticate(secret=secret).refusal == Refusal.ARCHIVED


def test_it_sees_new_limits_on_the_very_next_request(alice_key, run_on_commit):
    key, secret = alice_key
    assert api_key_authenticate(secret=secret).key.monthly_limit is None
    api_key_change_limits(key=key, monthly_limit=Decimal("7"), total_limit=Decimal("9"))
    result = api_key_authenticate(secret=secret)
    assert (result.key.monthly_limit, result.key.total_limit) == (Decimal("7"), Decimal("9"))


def test_it_does_not_let_a_stale_read_overwrite_the_drop(alice_key, run_on_commit):
    key, secret = alice_key
    stale = ApiKey.objects.select_related("grant", "owner").get(pk=key.pk)  # read before…
    api_key_revoke(key=key)  # … the revoke commits
    from apps.keys.cache import remember_key

    remember_key(kind="api", key=stale)  # the slow request now tries to cache what it read
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
def test_it_drops_the_entry_in_redis_for_every_process(alice_key, run_on_commit):
    from django.core.cache.backends.redis import RedisCache

    key, secret = alice_key
    assert "RedisCache" in settings.CACHES["default"]["BACKEND"]
    assert api_key_authenticate(secret=secret).ok
    # Another process: its own connection to the same Redis.
    other_process = RedisCache(settings.REDIS_URL, settings.CACHES["default"])
    name = other_process.make_key(cache_key(kind="api", lookup_prefix=key.lookup_prefix))
    assert other_process.get(cache_key(kind="api", lookup_prefix=key.lookup_prefix)).pk == key.pk
    api_key_revoke(key=key)
    assert other_process.get(cache_key(kind="api", lookup_prefix=key.lookup_prefix)) == "changed"
    assert name.startswith(settings.CACHES["default"]["KEY_PREFIX"])
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED


def test_it_keeps_working_when_the_cache_is_down(alice_key):
    _, secret = alice_key
    with (
        mock.patch("apps.keys.cache._get", side_effect=ConnectionError("down")),
        mock.patch("apps.keys.cache._add", side_effect=ConnectionError("down")),
    ):
        assert api_key_authenticate(secret=secret).ok


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
@pytest.mark.django_db(transaction=True)
def test_it_keeps_working_from_async_code_when_the_cache_redis_is_down(alice_key, settings):
    key, secret = alice_key
    nothing_listens = "redis://127.0.0.1:1/0"
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": nothing_listens}}
    authenticate = async_to_sync(aapi_key_authenticate)
    assert authenticate(secret=secret).key.pk == key.pk
    assert authenticate(secret=secret).key.pk == key.pk  # not cached, still served


def test_it_keeps_the_owners_password_hash_out_of_the_cache(alice_key):
    key, secret = alice_key
    api_key_authenticate(secret=secret)
    cached = cache.get(cache_key(kind="api", lookup_prefix=key.lookup_prefix))
    assert "password" not in cached.owner.__dict__


# The async lookup reads the key in a worker thread, on its own connection: committed rows.
@pytest.mark.django_db(transaction=True)
def test_it_authenticates_from_async_code(alice_key, run_on_commit):
    key, secret = alice_key
    authenticate = async_to_sync(aapi_key_authenticate)
    assert authenticate(secret=secret).key.pk == key.pk
    assert authenticate(secret=secret).ok  # from the cache
    assert authenticate(secret="nope").refusal == Refusal.MALFORMED
    api_key_revoke(key=key)
    assert authenticate(secret=secret).refusal == Refusal.REVOKED


@pytest.mark.django_db(transaction=True)  # the async read after a miss is another thread's
def test_it_sees_changes_at_once_from_async_code_though_it_reuses_decoded_entries(alice_key):
    # The event loop reuses what it unpickled for the same stored bytes; a changed entry is
    # other bytes, so new limits and a revoke are seen on the very next request.
    key, secret = alice_key
    authenticate = async_to_sync(aapi_key_authenticate)
    assert authenticate(secret=secret).ok  # read from the database, then cached
    first = authenticate(secret=secret).key
    assert authenticate(secret=secret).key is first  # the same cached bytes, decoded once
    api_key_change_limits(key=key, monthly_limit=Decimal("7"), total_limit=Decimal("9"))
    result = authenticate(secret=secret)
    assert result.ok, (result.refusal, result.message)
    changed = result.key
    assert (changed.monthly_limit, changed.total_limit) == (Decimal("7"), Decimal("9"))
    assert first.monthly_limit is None  # the shared old copy was not changed in place
    api_key_revoke(key=key)
    assert authenticate(secret=secret).refusal == Refusal.REVOKED


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer anv-abc", "anv-abc"),
        ("bearer   anv-abc  ", "anv-abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_it_reads_bearer_headers(header, expected):
    assert bearer_secret(header) == expected


def test_it_sees_a_changed_affiliation_on_the_very_next_request(alice_key, run_on_commit):
    # The cached key carries its owner: a person who becomes commercial must not keep the
    # academic view of Non-commercial models for the cache's lifetime.
    key, secret = alice_key
    assert not api_key_authenticate(secret=secret).key.owner.is_commercial  # now cached
    owner = key.owner
    owner.affiliation = "commercial"
    owner.save()
    assert api_key_authenticate(secret=secret).key.owner.is_commercial


def test_it_keeps_the_cache_across_a_login(alice_key, run_on_commit, django_assert_num_queries):
    key, secret = alice_key
    assert api_key_authenticate(secret=secret).ok  # now cached
    owner = key.owner
    owner.last_login = timezone.now()
    owner.save(update_fields=["last_login"])
    with django_assert_num_queries(0):
        assert api_key_authenticate(secret=secret).ok
