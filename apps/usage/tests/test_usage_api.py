"""GET /api/v1/usage: the billing status of the calling API key."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.keys.services import api_key_create, api_key_revoke, management_key_create
from apps.limits.services import member_limit_set
from apps.usage.periods import period_for
from apps.usage.tests.conftest import REQUEST_COST, place
from apps.usage.tests.conftest import spend as spend_once

pytestmark = pytest.mark.django_db
URL = "/api/v1/usage"


@pytest.fixture
def api():
    return APIClient()


def get(api, secret: str | None, **headers):
    if secret is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return api.get(URL, **headers)


def spend(key, world, requests: int = 1) -> None:
    """Settle ``requests`` requests of REQUEST_COST each through the accounting services."""
    for _ in range(requests):
        spend_once(key, world)


def bobs_key(world, **limits):
    return api_key_create(grant=world.grant, owner=world.bob, name="bob-key", **limits)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["message"]
    return error


def test_it_reports_every_budget_as_decimal_strings(api, world):
    key, secret = bobs_key(world, monthly_limit=Decimal("10"), total_limit=Decimal("25.5"))
    member_limit_set(grant=world.grant, user=world.bob, monthly_limit=Decimal("20"),
                     changed_by=world.alice)  # fmt: skip
    spend(key, world, requests=3)

    response = get(api, secret)

    assert response.status_code == 200
    assert response.json() == {
        "period": period_for(),
        "key": {"used_month": "0.006", "used_total": "0.006", "monthly_limit": "10",
                "total_limit": "25.5", "monthly_left": "9.994", "total_left": "25.494"},
        "member": {"used_month": "0.006", "monthly_limit": "20", "monthly_left": "19.994"},
        "grant": {"allocated": "1000", "used": "0.006", "held": "0", "left": "999.994"},
        "remaining": "9.994",
        "limited_by": "key_monthly",
    }  # fmt: skip


def test_no_limits_on_key_and_member_are_nulls_and_the_grant_limits(api, world):
    key, secret = bobs_key(world)
    spend(key, world)

    data = get(api, secret).json()

    assert data["key"]["monthly_limit"] is None and data["key"]["total_limit"] is None
    assert data["key"]["monthly_left"] is None and data["key"]["total_left"] is None
    assert data["member"]["monthly_limit"] is None and data["member"]["monthly_left"] is None
    assert (data["limited_by"], data["remaining"]) == ("grant", "999.998")


def limit_grant(world, key):
    Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=Decimal("1"))


def limit_key_total(world, key):
    ApiKey.objects.filter(pk=key.pk).update(total_limit=Decimal("2"))


def limit_key_monthly(world, key):
    ApiKey.objects.filter(pk=key.pk).update(monthly_limit=Decimal("3"))


def limit_member_monthly(world, key):
    member_limit_set(grant=world.grant, user=world.bob, monthly_limit=Decimal("4"),
                     changed_by=world.alice)  # fmt: skip


@pytest.mark.parametrize(
    ("limit", "expected", "remaining"),
    [
        (limit_grant, "grant", "0.996"),
        (limit_key_total, "key_total", "1.996"),
        (limit_key_monthly, "key_monthly", "2.996"),
        (limit_member_monthly, "member_monthly", "3.996"),
    ],
    ids=["grant", "key_total", "key_monthly", "member_monthly"],
)
def test_limited_by_names_the_budget_with_the_least_left(api, world, limit, expected, remaining):
    key, secret = bobs_key(world, monthly_limit=Decimal("50"), total_limit=Decimal("60"))
    member_limit_set(grant=world.grant, user=world.bob, monthly_limit=Decimal("70"),
                     changed_by=world.alice)  # fmt: skip
    spend(key, world, requests=2)
    get(api, secret)  # the key is now cached by authentication; limits must be read live
    limit(world, key)

    data = get(api, secret).json()

    assert (data["limited_by"], data["remaining"]) == (expected, remaining)
    assert Decimal(data["remaining"]) == _least(data)


def _least(data) -> Decimal:
    """The least room under the four budgets, computed from the answer's own figures."""
    key, member, grant = data["key"], data["member"], data["grant"]
    rooms = [Decimal(grant["left"])]
    if key["total_limit"] is not None:
        rooms.append(Decimal(key["total_limit"]) - Decimal(key["used_total"]))
    if key["monthly_limit"] is not None:
        rooms.append(Decimal(key["monthly_limit"]) - Decimal(key["used_month"]))
    if member["monthly_limit"] is not None:
        rooms.append(Decimal(member["monthly_limit"]) - Decimal(member["used_month"]))
    return min(rooms)


def test_what_is_left_under_each_budget_excludes_requests_in_flight(api, world):
    key, secret = bobs_key(world, monthly_limit=Decimal("10"), total_limit=Decimal("20"))
    member_limit_set(grant=world.grant, user=world.bob, monthly_limit=Decimal("30"),
                     changed_by=world.alice)  # fmt: skip
    spend(key, world)
    place(key, world)  # one request in flight holds REQUEST_COST under every budget

    data = get(api, secret).json()

    assert (data["key"]["monthly_left"], data["key"]["total_left"]) == ("9.996", "19.996")
    assert data["member"]["monthly_left"] == "29.996"
    assert (data["grant"]["held"], data["grant"]["left"]) == ("0.002", "999.996")
    assert (data["limited_by"], data["remaining"]) == ("key_monthly", "9.996")


def test_a_spent_budget_reports_nothing_remaining(api, world):
    key, secret = bobs_key(world, total_limit=REQUEST_COST)
    spend(key, world)

    data = get(api, secret).json()

    assert (data["limited_by"], data["remaining"]) == ("key_total", "0")


def test_without_a_key_it_is_401(api, world):
    response = get(api, None)

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer anv-not-a-real-key", "Bearer anv-", "Basic YWxpY2U6eA==", "Bearer"]
)
def test_a_bad_key_is_401(api, world, header):
    bobs_key(world)

    assert_error(api.get(URL, HTTP_AUTHORIZATION=header), 401, "invalid_api_key")


def test_a_wrong_secret_for_a_real_prefix_is_401(api, world):
    _key, secret = bobs_key(world)

    assert_error(get(api, secret[:-4] + "AAAA"), 401, "invalid_api_key")


def test_a_management_key_is_403(api, world):
    _key, secret = management_key_create(owner=world.bob, name="automation")

    error = assert_error(get(api, secret), 403, "wrong_key_kind")
    assert "API key" in error["message"]


def test_a_revoked_key_is_401_at_once(api, world):
    key, secret = bobs_key(world)
    assert get(api, secret).status_code == 200

    api_key_revoke(key=key)

    error = assert_error(get(api, secret), 401, "invalid_api_key")
    assert "revoked" in error["message"]


def test_an_expired_key_is_401(api, world):
    key, secret = bobs_key(world)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    error = assert_error(get(api, secret), 401, "invalid_api_key")
    assert "expired" in error["message"]


def test_a_signed_in_session_is_not_enough(api, world):
    api.force_login(world.bob)

    assert_error(get(api, None), 401, "not_authenticated")


def test_it_is_documented_with_the_api_key_scheme_and_string_decimals(client, world):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").json()

    operation = schema["paths"]["/api/v1/usage"]["get"]
    assert operation["security"] == [{"ApiKey": []}]
    assert set(operation["responses"]) == {"200", "401", "403"}
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    status = schema["components"]["schemas"]["UsageStatus"]["properties"]
    assert set(status) == {"period", "key", "member", "grant", "remaining", "limited_by"}
    assert status["remaining"]["type"] == "string" and status["remaining"]["format"] == "decimal"
    assert "limited_by" in operation["description"]
