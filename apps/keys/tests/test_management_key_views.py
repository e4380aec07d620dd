from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.keys.auth import Refusal, management_key_authenticate
from apps.keys.models import ManagementKey
from apps.keys.tests.conftest import tables_containing

pytestmark = pytest.mark.django_db


def expiry_input(days: int) -> str:
    return timezone.localtime(timezone.now() + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def shown_secret(response) -> str | None:
    match = re.search(r'value="(anvm-[0-9a-f]{12}[A-Za-z0-9]{40})"', response.content.decode())
    return match.group(1) if match else None


def test_it_creates_a_management_key_and_shows_the_secret_once(client, world):
    client.force_login(world.bob)
    data = {"name": "ci", "expires_at": expiry_input(5)}
    response = client.post(reverse("management_keys:create"), data, follow=True)
    secret = shown_secret(response)
    assert secret and b"can not show it again" in response.content
    key = ManagementKey.objects.get(name="ci")
    assert key.owner == world.bob
    assert management_key_authenticate(secret=secret).key.pk == key.pk
    again = client.get(reverse("management_keys:created", args=[key.public_id]), follow=True)
    assert shown_secret(again) is None and b"can not be shown again" in again.content
    assert tables_containing(secret[17:]) == []


def test_it_lists_only_the_users_management_keys(client, world, alice_management_key):
    client.force_login(world.bob)
    assert b"alice-automation" not in client.get(reverse("management_keys:list")).content
    client.force_login(world.alice)
    body = client.get(reverse("management_keys:list")).content.decode()
    assert "alice-automation" in body and "Active" in body


def test_it_refuses_an_expiry_in_the_past(client, world):
    client.force_login(world.alice)
    data = {"name": "ci", "expires_at": expiry_input(-1)}
    response = client.post(reverse("management_keys:create"), data)
    assert "future" in " ".join(response.context["form"].errors["expires_at"])
    assert not ManagementKey.objects.exists()


@pytest.mark.parametrize(
    "expires_at",
    ["9999-12-31T23:59:59-12:00", "9999-12-31T23:59-05:00", "9999-12-31T23:30+00:00",
     "0001-01-01T00:00+14:00"],
)  # fmt: skip
def test_it_refuses_an_expiry_off_the_calendar_on_the_form(client, world, expires_at):
    """An offset can move a time past 9999-12-31 in UTC (the database refused it: a 500), and
    one just before it is past the calendar in local time (the list of keys could not show it:
    a 500 on every later visit)."""
    client.force_login(world.alice)
    response = client.post(
        reverse("management_keys:create"), {"name": "ci", "expires_at": expires_at}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["expires_at"]
    assert not ManagementKey.objects.exists()
    assert client.get(reverse("management_keys:list")).status_code == 200


def test_it_revokes_after_confirmation(client, world, alice_management_key, run_on_commit):
    key, secret = alice_management_key
    assert management_key_authenticate(secret=secret).ok
    client.force_login(world.alice)
    confirm = client.get(reverse("management_keys:revoke", args=[key.public_id]))
    assert b"Revoke alice-automation?" in confirm.content
    client.post(reverse("management_keys:revoke", args=[key.public_id]))
    assert management_key_authenticate(secret=secret).refusal == Refusal.REVOKED


@pytest.mark.parametrize("username", ["bob", "charlie"])
def test_it_hides_alices_management_keys_from_others(client, world, alice_management_key, username):
    key, _ = alice_management_key
    client.force_login(getattr(world, username))
    for name in ["management_keys:revoke", "management_keys:created"]:
        assert client.get(reverse(name, args=[key.public_id])).status_code == 404
    assert client.post(reverse("management_keys:revoke", args=[key.public_id])).status_code == 404
    assert ManagementKey.objects.get(pk=key.pk).revoked_at is None


def test_it_archives_a_revoked_management_key_out_of_the_list(client, world, alice_management_key):
    key, _ = alice_management_key
    client.force_login(world.alice)
    client.post(reverse("management_keys:revoke", args=[key.public_id]))
    archive = reverse("management_keys:archive", args=[key.public_id])
    assert archive in client.get(reverse("management_keys:list")).content.decode()
    client.post(archive)
    assert b'data-key="alice-automation"' not in client.get(reverse("management_keys:list")).content
    assert ManagementKey.objects.get(pk=key.pk).archived_at is not None


def test_archiving_an_active_management_key_revokes_it(client, world, alice_management_key):
    key, secret = alice_management_key
    client.force_login(world.alice)
    client.post(reverse("management_keys:archive", args=[key.public_id]))
    assert management_key_authenticate(secret=secret).refusal == Refusal.ARCHIVED


@pytest.mark.parametrize("username", ["bob", "charlie"])
def test_it_hides_alices_management_key_from_others(client, world, alice_management_key, username):
    key, _ = alice_management_key
    client.force_login(getattr(world, username))
    archive = reverse("management_keys:archive", args=[key.public_id])
    assert client.get(archive).status_code == 404
    assert client.post(archive).status_code == 404
    assert ManagementKey.objects.get(pk=key.pk).archived_at is None
