"""Failing closed: a change that must reach every process through the key cache (revoke,
archive, lower limits) is refused, with nothing changed, when this process can not reach the
cache's Redis. Another process (here: the real Redis the key was cached in) then goes on
accepting the key as it still is: never "revoked" but accepted."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings
from django.urls import reverse

from apps.keys.auth import api_key_authenticate
from apps.keys.cache import API_KIND, cached_key
from apps.keys.models import ApiKey
from tests.servers import free_port

pytestmark = pytest.mark.django_db

if settings.CACHES["default"]["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
    pytest.skip("needs REDIS_URL: the key cache in Redis", allow_module_level=True)


@pytest.fixture
def cached_alice_key(alice_key):
    """Alice's key, authenticated once: cached in Redis, as every process would find it."""
    key, secret = alice_key
    assert api_key_authenticate(secret=secret).ok
    assert cached_key(kind=API_KIND, lookup_prefix=key.lookup_prefix) is not None
    return key, secret


@pytest.fixture
def redis_down(settings):
    """This process's cache points at a closed loopback port (for the block's length)."""
    real = copy.deepcopy(settings.CACHES)

    class Outage:
        def __enter__(self):
            caches = copy.deepcopy(real)
            caches["default"]["LOCATION"] = f"redis://127.0.0.1:{free_port()}/3"
            settings.CACHES = caches

        def __exit__(self, *exc):
            settings.CACHES = real

    return Outage()


@pytest.fixture
def alice_client(client, world):
    client.force_login(world.alice)
    return client


def still_works(key, secret) -> None:
    """Nothing changed in the database, and the key is accepted (from the cache, as another
    process would), with its old limits."""
    row = ApiKey.objects.get(pk=key.pk)
    assert (row.revoked_at, row.archived_at) == (None, None)
    assert (row.monthly_limit, row.total_limit) == (key.monthly_limit, key.total_limit)
    assert api_key_authenticate(secret=secret).ok


@pytest.mark.parametrize("action", ["revoke", "archive"])
def test_the_api_refuses_a_revoke_it_can_not_tell_the_cache_with_503(
    alice_client, cached_alice_key, redis_down, action
):
    key, secret = cached_alice_key
    with redis_down:
        answer = alice_client.post(f"/api/v1/api_keys/{key.public_id}/{action}")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "key_cache_unavailable"
    assert "nothing was changed" in answer.json()["error"]["message"]
    still_works(key, secret)


def test_the_api_refuses_lower_limits_it_can_not_tell_the_cache_with_503(
    alice_client, cached_alice_key, redis_down
):
    key, secret = cached_alice_key
    with redis_down:
        answer = alice_client.post(
            f"/api/v1/api_keys/{key.public_id}/limits",
            {"total_credits_quota": "0.01"},
            content_type="application/json",
        )
    assert answer.status_code == 503
    still_works(key, secret)


@pytest.mark.parametrize("action", ["revoke", "archive"])
def test_the_portal_says_the_revoke_did_not_happen(
    alice_client, cached_alice_key, redis_down, action
):
    key, secret = cached_alice_key
    with redis_down:
        answer = alice_client.post(reverse(f"keys:{action}", args=[key.public_id]))
    assert answer.status_code == 503
    page = answer.content.decode()
    assert "Temporarily unavailable" in page
    assert "nothing was changed" in page
    assert "is revoked" not in page and "is archived" not in page
    still_works(key, secret)


def test_the_portal_refuses_lower_limits_in_the_form(alice_client, cached_alice_key, redis_down):
    key, secret = cached_alice_key
    with redis_down:
        answer = alice_client.post(
            reverse("keys:change_limits", args=[key.public_id]),
            {"monthly_limit": "", "total_limit": "0.01"},
        )
    assert answer.status_code == 200  # the form again, with the reason
    assert "nothing was changed" in answer.content.decode()
    still_works(key, secret)


def test_with_the_cache_back_the_revoke_goes_through_and_the_key_is_refused(
    alice_client, cached_alice_key, run_on_commit
):
    key, secret = cached_alice_key
    answer = alice_client.post(f"/api/v1/api_keys/{key.public_id}/revoke")
    assert answer.status_code == 200
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert not api_key_authenticate(secret=secret).ok
