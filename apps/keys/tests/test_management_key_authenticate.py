from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from apps.keys.auth import Refusal, amanagement_key_authenticate, management_key_authenticate
from apps.keys.models import ManagementKey
from apps.keys.services import management_key_revoke
from apps.keys.tests.conftest import past

pytestmark = pytest.mark.django_db


def test_it_accepts_a_valid_management_key_with_its_owner(alice_management_key):
    key, secret = alice_management_key
    result = management_key_authenticate(secret=secret)
    assert result.ok and result.key.pk == key.pk and result.key.owner.username == "alice"


def test_it_refuses_an_api_key_as_the_wrong_kind(alice_key, django_assert_num_queries):
    _, secret = alice_key
    with django_assert_num_queries(0):
        result = management_key_authenticate(secret=secret)
    assert result.refusal == Refusal.WRONG_KIND and result.status == 403


def test_it_refuses_malformed_and_unknown_keys(world, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert management_key_authenticate(secret="anvm-x").refusal == Refusal.MALFORMED
    unknown = "anvm-0123456789ab" + "a" * 40
    assert management_key_authenticate(secret=unknown).refusal == Refusal.UNKNOWN


def test_it_refuses_an_expired_management_key(alice_management_key):
    key, secret = alice_management_key
    ManagementKey.objects.filter(pk=key.pk).update(expires_at=past())
    assert management_key_authenticate(secret=secret).refusal == Refusal.EXPIRED


def test_it_refuses_a_revoked_management_key_on_the_next_request(
    alice_management_key, run_on_commit, django_assert_num_queries
):
    key, secret = alice_management_key
    assert management_key_authenticate(secret=secret).ok
    with django_assert_num_queries(0):
        assert management_key_authenticate(secret=secret).ok  # cached
    management_key_revoke(key=key)
    result = management_key_authenticate(secret=secret)
    assert result.refusal == Refusal.REVOKED and result.status == 401


# The async lookup reads the key in a worker thread, on its own connection: committed rows.
@pytest.mark.django_db(transaction=True)
def test_it_authenticates_management_keys_from_async_code(alice_management_key):
    key, secret = alice_management_key
    assert async_to_sync(amanagement_key_authenticate)(secret=secret).key.pk == key.pk
