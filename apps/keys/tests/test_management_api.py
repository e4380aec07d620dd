"""POST /api/v1/management/api_keys/create, every answer it can give."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.grants.models import Grant
from apps.keys.auth import api_key_authenticate
from apps.keys.models import ApiKey, ManagementKey
from apps.keys.services import management_key_create, management_key_revoke
from apps.keys.tests.conftest import past
from apps.teams.models import Team

pytestmark = pytest.mark.django_db
URL = "/api/v1/management/api_keys/create"
MISSING = object()


@pytest.fixture
def api():
    return APIClient()


def post(api, secret: str | None, body, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    return api.post(URL, body, format="json", **headers, **extra)


def body_for(world, **overrides) -> dict:
    data = {
        "name": "from-script",
        "grant_id": str(world.grant.public_id),
        "total_credits_quota": 100,
        "monthly_credits_quota": "12.5",
        "expires_at": (timezone.now() + dt.timedelta(days=7)).isoformat(),
    }
    return data | overrides


def assert_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["param"] == param
    return error


def test_it_creates_a_key_for_the_management_keys_owner(api, world, alice_management_key):
    mgmt, secret = alice_management_key
    response = post(api, secret, body_for(world, comment="made by CI"))
    assert response.status_code == 201
    data = response.json()
    assert set(data) == {
        "id",
        "name",
        "key",
        "grant_id",
        "expires_at",
        "monthly_credits_quota",
        "total_credits_quota",
    }
    key = ApiKey.objects.get(public_id=data["id"])
    assert (key.owner, key.grant, key.name, key.comment) == (
        world.alice,
        world.grant,
        "from-script",
        "made by CI",
    )
    assert (key.monthly_limit, key.total_limit) == (Decimal("12.5"), Decimal(100))
    assert data["grant_id"] == str(world.grant.public_id)
    assert (data["monthly_credits_quota"], data["total_credits_quota"]) == ("12.5", "100")
    assert api_key_authenticate(secret=data["key"]).key.pk == key.pk
    assert ManagementKey.objects.get(pk=mgmt.pk).last_used is not None


def test_it_accepts_the_grants_identifier_and_defaults(api, world, alice_management_key):
    _, secret = alice_management_key
    response = post(api, secret, {"name": "minimal", "grant_id": "alice-grant"})
    assert response.status_code == 201
    data = response.json()
    assert data["monthly_credits_quota"] is None and data["total_credits_quota"] is None
    expires = dt.datetime.fromisoformat(data["expires_at"])
    assert abs(expires - (timezone.now() + dt.timedelta(days=30))) < dt.timedelta(minutes=1)


def test_it_reads_a_naive_expiry_in_the_services_time_zone(
    api, world, alice_management_key, settings
):
    _, secret = alice_management_key
    local = dt.datetime.now(zoneinfo.ZoneInfo(settings.TIME_ZONE)) + dt.timedelta(days=2)
    naive = local.replace(tzinfo=None, microsecond=0)
    response = post(api, secret, body_for(world, expires_at=naive.isoformat()))
    assert response.status_code == 201
    key = ApiKey.objects.get(public_id=response.json()["id"])
    assert key.expires_at == local.replace(microsecond=0)


def test_it_lets_a_plain_member_create_keys_in_the_grant(api, world):
    _, secret = management_key_create(owner=world.bob, name="bob-ci")
    response = post(api, secret, body_for(world))
    assert response.status_code == 201
    assert ApiKey.objects.get(public_id=response.json()["id"]).owner == world.bob


def test_it_answers_the_same_404_for_a_foreign_or_missing_grant(api, world):
    other = Grant.objects.create(
        team=Team.objects.create(name="b-team"),
        identifier="b-grant",
        credits_allocated=10,
        valid_from=world.grant.valid_from,
        valid_until=world.grant.valid_until,
    )
    _, secret = management_key_create(owner=world.alice, name="m")
    foreign = assert_error(
        post(api, secret, body_for(world, grant_id=str(other.public_id))), 404, "grant_id"
    )
    by_name = assert_error(post(api, secret, body_for(world, grant_id="b-grant")), 404, "grant_id")
    missing = assert_error(
        post(api, secret, body_for(world, grant_id=str(uuid.uuid4()))), 404, "grant_id"
    )
    assert foreign == by_name == missing
    assert foreign["type"] == "not_found_error"
    assert not ApiKey.objects.exists()


def test_it_refuses_an_outsiders_management_key_for_the_grant(api, world):
    _, secret = management_key_create(owner=world.charlie, name="m")
    assert_error(post(api, secret, body_for(world)), 404, "grant_id")


def test_it_answers_409_for_a_duplicate_name(api, world, alice_management_key):
    _, secret = alice_management_key
    assert post(api, secret, body_for(world)).status_code == 201
    error = assert_error(post(api, secret, body_for(world)), 409, "name")
    assert error["code"] == "conflict" and "from-script" in error["message"]


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"name": MISSING}, "name"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"grant_id": MISSING}, "grant_id"),
        ({"total_credits_quota": -1}, "total_credits_quota"),
        ({"monthly_credits_quota": "-0.5"}, "monthly_credits_quota"),
        ({"monthly_credits_quota": "lots"}, "monthly_credits_quota"),
        ({"monthly_credits_quota": "0.0000001"}, "monthly_credits_quota"),
        ({"total_credits_quota": "NaN"}, "total_credits_quota"),
        ({"total_credits_quota": True}, "total_credits_quota"),
        ({"expires_at": "next tuesday"}, "expires_at"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"comment": "x" * 501}, "comment"),
        ({"monthly_quota": 5}, "monthly_quota"),
    ],
)
def test_it_answers_400_naming_the_field(api, world, alice_management_key, overrides, param):
    _, secret = alice_management_key
    body = {k: v for k, v in body_for(world, **overrides).items() if v is not MISSING}
    error = assert_error(post(api, secret, body), 400, param)
    assert error["type"] == "invalid_request_error"
    assert not ApiKey.objects.exists()


def test_it_answers_400_for_a_body_that_is_not_json(api, world, alice_management_key):
    _, secret = alice_management_key
    response = api.post(
        URL, "{not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert_error(response, 400)


def test_it_answers_400_for_a_json_list(api, world, alice_management_key):
    _, secret = alice_management_key
    assert_error(post(api, secret, [1, 2]), 400)


def test_it_refuses_an_api_key_with_403(api, world, alice_key):
    _, secret = alice_key
    error = assert_error(post(api, secret, body_for(world)), 403)
    assert error["type"] == "permission_error" and "management key" in error["message"]


def test_it_refuses_a_revoked_management_key_with_401(api, world, alice_management_key):
    key, secret = alice_management_key
    management_key_revoke(key=key)
    error = assert_error(post(api, secret, body_for(world)), 401)
    assert "revoked" in error["message"] and error["type"] == "authentication_error"


def test_it_refuses_an_expired_management_key_with_401(api, world, alice_management_key):
    key, secret = alice_management_key
    ManagementKey.objects.filter(pk=key.pk).update(expires_at=past())
    assert "expired" in assert_error(post(api, secret, body_for(world)), 401)["message"]


@pytest.mark.parametrize(
    "secret", ["anvm-0123456789ab" + "a" * 40, "anvm-garbage", "sk-whatever", "x"]
)
def test_it_refuses_unknown_or_malformed_keys_with_401(api, world, secret):
    assert_error(post(api, secret, body_for(world)), 401)


def test_it_asks_for_a_key_with_401(api, world):
    response = post(api, None, body_for(world))
    assert_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_non_bearer_header_with_401(api, world, alice_management_key):
    _, secret = alice_management_key
    response = api.post(URL, body_for(world), format="json", HTTP_AUTHORIZATION=f"Token {secret}")
    assert_error(response, 401)


def test_it_does_not_accept_a_browser_session(api, world):
    api.force_login(world.alice)
    assert_error(api.post(URL, body_for(world), format="json"), 401)


def test_it_answers_405_to_get(api, world, alice_management_key):
    _, secret = alice_management_key
    assert_error(api.get(URL, HTTP_AUTHORIZATION=f"Bearer {secret}"), 405)
