"""A grant's validity dates: no new keys once it has ended, and its keys work only while it is
valid (today in the service's time zone)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from unittest import mock

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.exceptions import ApplicationError
from apps.grants.models import Grant
from apps.keys.auth import Refusal, api_key_authenticate
from apps.keys.models import ApiKey
from apps.keys.services import api_key_create, management_key_create
from tests.world import sign_in_staff

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def set_dates(world, valid_from: dt.date, valid_until: dt.date) -> None:
    Grant.objects.filter(pk=world.grant.pk).update(valid_from=valid_from, valid_until=valid_until)
    world.grant.refresh_from_db()


def end_yesterday(world) -> dt.date:
    today = timezone.localdate()
    set_dates(world, today - 30 * DAY, today - DAY)
    return today - DAY


def local_moment(day: dt.date, hour: int, minute: int) -> dt.datetime:
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zone)


def assert_error(response, status: int, param: str | None, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"]) == (param, code)
    return error


# Creating keys ------------------------------------------------------------------------------


def test_it_refuses_a_key_for_a_grant_that_has_ended(world):
    ended = end_yesterday(world)
    with pytest.raises(ApplicationError) as info:
        api_key_create(grant=world.grant, owner=world.bob, name="late")
    assert info.value.message.startswith(f"Grant alice-grant ended on {ended:%Y-%m-%d}")
    assert not ApiKey.objects.exists()


def test_it_creates_keys_on_the_grants_last_day_and_before_it_starts(world):
    today = timezone.localdate()
    set_dates(world, today - 10 * DAY, today)
    assert api_key_create(grant=world.grant, owner=world.bob, name="last-day")[0].pk
    set_dates(world, today + 5 * DAY, today + 50 * DAY)
    assert api_key_create(grant=world.grant, owner=world.bob, name="early")[0].pk


def test_it_explains_an_ended_grant_on_the_portal_form(client, world):
    ended = end_yesterday(world)
    client.force_login(world.bob)
    expires = timezone.localtime(timezone.now() + 10 * DAY).strftime("%Y-%m-%dT%H:%M")
    form = {"grant": str(world.grant.public_id), "name": "laptop", "expires_at": expires}
    response = client.post(reverse("keys:create"), form)
    assert response.status_code == 200
    assert response.context["form"].errors["grant"] == [
        f"Grant alice-grant ended on {ended:%Y-%m-%d} (valid from "
        f"{world.grant.valid_from:%Y-%m-%d} until {ended:%Y-%m-%d}); it gets no new API keys."
    ]
    assert not ApiKey.objects.exists()


def test_it_answers_400_for_an_ended_grant_on_the_own_keys_api(world):
    end_yesterday(world)
    api = APIClient()
    api.force_login(world.bob)
    response = api.post(
        "/api/v1/api_keys/create", {"name": "script", "grant_id": "alice-grant"}, format="json"
    )
    error = assert_error(response, 400, "grant_id", "invalid_request")
    assert "alice-grant ended on" in error["message"]


def test_it_answers_400_for_an_ended_grant_on_the_management_endpoint(world):
    end_yesterday(world)
    _, secret = management_key_create(owner=world.bob, name="ci")
    response = APIClient().post(
        "/api/v1/management/api_keys/create",
        {"name": "from-ci", "grant_id": str(world.grant.public_id)},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    error = assert_error(response, 400, "grant_id", "invalid_request")
    assert "alice-grant ended on" in error["message"]


# Using keys ---------------------------------------------------------------------------------


@pytest.fixture
def bob_secret(world) -> str:
    return api_key_create(grant=world.grant, owner=world.bob, name="bob-key")[1]


def test_it_refuses_a_key_whose_grant_has_ended_with_403(world, bob_secret):
    ended = end_yesterday(world)
    result = api_key_authenticate(secret=bob_secret)
    assert (result.ok, result.refusal, result.status, result.code) == (
        False, Refusal.GRANT_NOT_VALID, 403, "grant_not_valid",
    )  # fmt: skip
    assert result.message.startswith(
        f"Grant alice-grant ended on {ended:%Y-%m-%d}: it is valid from "
        f"{world.grant.valid_from:%Y-%m-%d} until {ended:%Y-%m-%d}"
    )


def test_it_refuses_a_key_whose_grant_has_not_started(world, bob_secret):
    today = timezone.localdate()
    set_dates(world, today + 2 * DAY, today + 20 * DAY)
    result = api_key_authenticate(secret=bob_secret)
    assert result.refusal == Refusal.GRANT_NOT_VALID
    assert f"starts on {today + 2 * DAY:%Y-%m-%d}" in result.message


def test_it_counts_days_in_the_services_time_zone(world, bob_secret):
    last = timezone.localdate() + 3 * DAY
    set_dates(world, last - 30 * DAY, last)
    with mock.patch("apps.keys.auth.timezone.now", return_value=local_moment(last, 23, 59)):
        assert api_key_authenticate(secret=bob_secret).ok
    with mock.patch("apps.keys.auth.timezone.now", return_value=local_moment(last + DAY, 0, 1)):
        assert api_key_authenticate(secret=bob_secret).refusal == Refusal.GRANT_NOT_VALID


def test_it_refuses_a_cached_key_once_its_grant_ends_without_a_query(
    world, bob_secret, django_assert_num_queries
):
    last = timezone.localdate() + 3 * DAY  # before the key itself expires
    set_dates(world, last - 30 * DAY, last)
    assert api_key_authenticate(secret=bob_secret).ok  # cached, with its grant
    after_end = local_moment(last + DAY, 9, 0)
    with (
        mock.patch("apps.keys.auth.timezone.now", return_value=after_end),
        django_assert_num_queries(0),
    ):
        assert api_key_authenticate(secret=bob_secret).refusal == Refusal.GRANT_NOT_VALID


def test_it_keeps_refusing_from_the_cache_without_a_query(
    world, bob_secret, django_assert_num_queries
):
    end_yesterday(world)
    assert api_key_authenticate(secret=bob_secret).refusal == Refusal.GRANT_NOT_VALID
    with django_assert_num_queries(0):
        assert api_key_authenticate(secret=bob_secret).refusal == Refusal.GRANT_NOT_VALID


def test_it_applies_new_dates_from_the_admin_at_once(
    client, world, bob_secret, django_capture_on_commit_callbacks
):
    from apps.accounts.models import User

    assert api_key_authenticate(secret=bob_secret).ok  # cached, with the old dates
    sign_in_staff(client, User.objects.create_superuser("operator", "op@example.org", "pw-op-12"))
    yesterday = timezone.localdate() - DAY
    form = {
        "team": world.team.pk,
        "identifier": world.grant.identifier,
        "credits_allocated": "1000",
        "valid_from": (yesterday - 30 * DAY).isoformat(),
        "valid_until": yesterday.isoformat(),
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:grants_grant_change", args=[world.grant.pk]), form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert api_key_authenticate(secret=bob_secret).refusal == Refusal.GRANT_NOT_VALID


def test_it_answers_the_usage_api_with_403_naming_the_grant(world, bob_secret):
    ended = end_yesterday(world)
    response = APIClient().get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {bob_secret}")
    error = assert_error(response, 403, None, "grant_not_valid")
    assert error["type"] == "permission_error"
    assert f"Grant alice-grant ended on {ended:%Y-%m-%d}" in error["message"]
