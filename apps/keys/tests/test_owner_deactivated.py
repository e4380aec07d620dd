"""A deactivated person's keys (API and management) are refused with 401 ``account_disabled``
from the very next request on, cached or not, and work again once the person is reactivated
(they were not revoked)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.keys.auth import (
    Refusal,
    aapi_key_authenticate,
    api_key_authenticate,
    management_key_authenticate,
)
from apps.keys.models import ApiKey
from apps.keys.services import api_key_create, api_key_revoke
from apps.keys.tests.test_management_api import body_for

pytestmark = pytest.mark.django_db
MESSAGE = (
    "The owner of this {} is deactivated; their keys do not work until the account is active again."
)


def set_active(user: User, active: bool) -> None:
    """As the Django admin does: the whole row saved."""
    user.is_active = active
    user.save()


def assert_disabled(result, label: str = "API key") -> None:
    assert (result.ok, result.refusal, result.status, result.code) == (
        False, Refusal.OWNER_INACTIVE, 401, "account_disabled",
    )  # fmt: skip
    assert result.message == MESSAGE.format(label)


def test_it_refuses_a_deactivated_owners_cached_key_and_accepts_it_after_reactivation(
    world, alice_key, run_on_commit
):
    key, secret = alice_key
    assert api_key_authenticate(secret=secret).ok  # now cached, with its owner
    set_active(world.alice, False)
    assert_disabled(api_key_authenticate(secret=secret))
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None  # not revoked: only refused
    set_active(world.alice, True)
    assert api_key_authenticate(secret=secret).key.pk == key.pk


def test_a_revoked_or_expired_key_says_so_whoever_owns_it(world, alice_key, run_on_commit):
    key, secret = alice_key
    set_active(world.alice, False)
    api_key_revoke(key=key)
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED


def test_a_deactivated_owners_key_costs_no_query_once_cached(
    world, alice_key, django_assert_num_queries
):
    _, secret = alice_key
    User.objects.filter(pk=world.alice.pk).update(is_active=False)
    cache.clear()  # no entry, no tombstone: as once the tombstone of the deactivation expired
    assert_disabled(api_key_authenticate(secret=secret))
    with django_assert_num_queries(0):
        assert_disabled(api_key_authenticate(secret=secret))


def test_it_refuses_a_deactivated_owners_management_key(world, alice_management_key):
    key, secret = alice_management_key
    assert management_key_authenticate(secret=secret).ok  # now cached
    set_active(world.alice, False)
    assert_disabled(management_key_authenticate(secret=secret), "management key")
    set_active(world.alice, True)
    assert management_key_authenticate(secret=secret).key.pk == key.pk


@pytest.mark.django_db(transaction=True)  # the async read is another thread's
def test_the_gateways_read_refuses_a_key_it_accepted_a_moment_ago(world, alice_key):
    key, secret = alice_key
    authenticate = async_to_sync(aapi_key_authenticate)
    assert authenticate(secret=secret).ok
    set_active(world.alice, False)
    assert_disabled(authenticate(secret=secret))
    set_active(world.alice, True)
    assert authenticate(secret=secret).key.pk == key.pk


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return response.json()["error"]


def test_the_usage_api_refuses_a_deactivated_owners_key(world, run_on_commit):
    _, secret = api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    api = APIClient(headers={"Authorization": f"Bearer {secret}"})
    assert api.get("/api/v1/usage").status_code == 200
    set_active(world.bob, False)
    error = error_of(api.get("/api/v1/usage"), 401)
    assert error == {
        "message": MESSAGE.format("API key"),
        "type": "authentication_error",
        "param": None,
        "code": "account_disabled",
    }
    set_active(world.bob, True)
    assert api.get("/api/v1/usage").status_code == 200


def test_the_management_api_refuses_a_deactivated_admins_management_key(
    world, alice_management_key, run_on_commit
):
    _, secret = alice_management_key
    api = APIClient(headers={"Authorization": f"Bearer {secret}"})
    url = "/api/v1/management/api_keys/create"
    set_active(world.alice, False)
    response = api.post(url, body_for(world), format="json")
    error = error_of(response, 401)
    assert (error["type"], error["code"]) == ("authentication_error", "account_disabled")
    assert error["message"] == MESSAGE.format("management key")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert not ApiKey.objects.exists()  # no key was made
    set_active(world.alice, True)
    assert api.post(url, body_for(world), format="json").status_code == 201
