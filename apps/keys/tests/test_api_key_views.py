from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.keys.auth import Refusal, api_key_authenticate
from apps.keys.models import ApiKey
from apps.keys.services import api_key_archive, api_key_create, api_key_revoke
from apps.keys.tests.conftest import tables_containing

pytestmark = pytest.mark.django_db


def local_input(moment: dt.datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


def create_form(world, **overrides) -> dict:
    data = {
        "grant": str(world.grant.public_id),
        "name": "laptop",
        "comment": "my notebook",
        "expires_at": local_input(timezone.now() + dt.timedelta(days=10)),
        "monthly_limit": "25",
        "total_limit": "",
    }
    return data | overrides


def shown_secret(response) -> str | None:
    match = re.search(r'value="(anv-[0-9a-f]{12}[A-Za-z0-9]{40})"', response.content.decode())
    return match.group(1) if match else None


def test_it_lists_only_the_users_own_unarchived_keys(client, world):
    api_key_create(grant=world.grant, owner=world.alice, name="alice-1", total_limit=Decimal(50))
    api_key_create(grant=world.grant, owner=world.bob, name="bob-1")
    archived, _ = api_key_create(grant=world.grant, owner=world.alice, name="alice-old")
    api_key_archive(key=archived)
    client.force_login(world.alice)
    response = client.get(reverse("keys:list"))
    body = response.content.decode()
    assert "alice-1" in body and "bob-1" not in body and "alice-old" not in body
    assert "alice-grant" in body and "Active" in body and "50" in body


def test_it_shows_each_status(client, world):
    api_key_create(grant=world.grant, owner=world.alice, name="fresh")
    revoked, _ = api_key_create(grant=world.grant, owner=world.alice, name="gone")
    api_key_revoke(key=revoked)
    expired, _ = api_key_create(grant=world.grant, owner=world.alice, name="old")
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(days=1))
    client.force_login(world.alice)
    body = client.get(reverse("keys:list")).content.decode()
    for name, status in [("fresh", "Active"), ("gone", "Revoked"), ("old", "Expired")]:
        row = re.search(rf'<tr data-key="{name}">.*?</tr>', body, re.S).group(0)
        assert status in row


def test_it_offers_only_the_users_grants_and_a_default_expiry(client, world, settings):
    client.force_login(world.bob)
    response = client.get(reverse("keys:create"))
    form = response.context["form"]
    assert list(form.fields["grant"].queryset) == [world.grant]
    initial = form.fields["expires_at"].initial()
    expected = timezone.now() + dt.timedelta(days=settings.API_KEY_DEFAULT_DAYS)
    assert abs(initial - expected) < dt.timedelta(minutes=2)


def test_it_tells_an_outsider_there_is_no_grant_to_use(client, world):
    client.force_login(world.charlie)
    response = client.get(reverse("keys:create"))
    assert b"not in a team with a grant" in response.content


def test_it_preselects_the_grant_from_its_page(client, world):
    client.force_login(world.alice)
    grant_page = client.get(reverse("consumption:grant", args=[world.grant.public_id]))
    assert b"Generate API key" in grant_page.content
    response = client.get(reverse("keys:create"), {"grant": world.grant.public_id})
    assert response.context["form"]["grant"].value() == str(world.grant.public_id)


def test_it_creates_a_key_and_shows_the_secret_once(client, world):
    client.force_login(world.alice)
    response = client.post(reverse("keys:create"), create_form(world), follow=True)
    secret = shown_secret(response)
    assert secret and b"can not show it again" in response.content
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(name="laptop")
    assert (key.owner, key.comment, key.monthly_limit, key.total_limit) == (
        world.alice,
        "my notebook",
        Decimal(25),
        None,
    )
    assert api_key_authenticate(secret=secret).key.pk == key.pk

    again = client.get(reverse("keys:created", args=[key.public_id]), follow=True)
    assert shown_secret(again) is None and secret not in again.content.decode()
    assert b"can not be shown again" in again.content
    assert tables_containing(secret[16:]) == []  # not in any table, sessions included


def test_it_does_not_hand_one_keys_secret_to_another_keys_page(client, world):
    client.force_login(world.alice)
    client.post(reverse("keys:create"), create_form(world))
    other, _ = api_key_create(grant=world.grant, owner=world.alice, name="other")
    response = client.get(reverse("keys:created", args=[other.public_id]), follow=True)
    assert shown_secret(response) is None


def test_it_explains_a_duplicate_name_on_the_form(client, world):
    api_key_create(grant=world.grant, owner=world.bob, name="laptop")
    client.force_login(world.alice)
    response = client.post(reverse("keys:create"), create_form(world))
    assert response.status_code == 200
    assert "already exists" in " ".join(response.context["form"].errors["name"])


def test_it_refuses_an_expiry_in_the_past_on_the_form(client, world):
    client.force_login(world.alice)
    data = create_form(world, expires_at=local_input(timezone.now() - dt.timedelta(days=1)))
    response = client.post(reverse("keys:create"), data)
    assert "future" in " ".join(response.context["form"].errors["expires_at"])
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("expires_at", ["9999-12-31T23:59:59-12:00", "9999-12-31T20:00-05:00"])
def test_it_refuses_an_expiry_past_the_calendar_in_utc_on_the_form(client, world, expires_at):
    """An offset can move a time past 9999-12-31 in UTC (the database refused it: a 500)."""
    client.force_login(world.alice)
    response = client.post(reverse("keys:create"), create_form(world, expires_at=expires_at))
    assert response.status_code == 200
    assert "out of range" in " ".join(response.context["form"].errors["expires_at"])
    assert not ApiKey.objects.exists()


def test_it_refuses_a_grant_of_another_team(client, world):
    client.force_login(world.charlie)
    response = client.post(reverse("keys:create"), create_form(world))
    assert "grant" in response.context["form"].errors
    assert not ApiKey.objects.exists()


def test_it_refuses_negative_limits_on_the_form(client, world):
    client.force_login(world.alice)
    response = client.post(reverse("keys:create"), create_form(world, monthly_limit="-1"))
    assert "monthly_limit" in response.context["form"].errors


def test_it_shows_a_key_page_without_the_secret(client, world, alice_key):
    key, secret = alice_key
    client.force_login(world.alice)
    body = client.get(reverse("consumption:api_key", args=[key.public_id])).content.decode()
    assert "alice-key" in body and key.display_prefix in body and secret not in body


def test_it_changes_limits_but_never_the_expiry(client, world, alice_key, run_on_commit):
    key, secret = alice_key
    assert api_key_authenticate(secret=secret).ok  # cached
    client.force_login(world.alice)
    form = client.get(reverse("keys:change_limits", args=[key.public_id])).context["form"]
    assert "expires_at" not in form.fields
    response = client.post(
        reverse("keys:change_limits", args=[key.public_id]),
        {"monthly_limit": "3.5", "total_limit": "10", "expires_at": "2099-01-01T00:00"},
    )
    assert response.status_code == 302
    changed = ApiKey.objects.get(pk=key.pk)
    assert (changed.monthly_limit, changed.total_limit) == (Decimal("3.5"), Decimal(10))
    assert changed.expires_at == key.expires_at
    assert api_key_authenticate(secret=secret).key.monthly_limit == Decimal("3.5")


def test_it_asks_before_revoking_and_revokes_on_post(client, world, alice_key, run_on_commit):
    key, secret = alice_key
    assert api_key_authenticate(secret=secret).ok
    client.force_login(world.alice)
    confirm = client.get(reverse("keys:revoke", args=[key.public_id]))
    assert b"Revoke alice-key?" in confirm.content and b"csrfmiddlewaretoken" in confirm.content
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    client.post(reverse("keys:revoke", args=[key.public_id]))
    assert ApiKey.objects.get(pk=key.pk).status == "revoked"
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED


def test_it_archives_into_the_archived_tab(client, world, alice_key, run_on_commit):
    key, secret = alice_key
    client.force_login(world.alice)
    assert (
        b"Archive alice-key?" in client.get(reverse("keys:archive", args=[key.public_id])).content
    )
    response = client.post(reverse("keys:archive", args=[key.public_id]), follow=True)
    assert response.request["PATH_INFO"] == reverse("keys:archived")
    assert b"alice-key" in response.content
    assert b"alice-key" not in client.get(reverse("keys:list")).content
    assert api_key_authenticate(secret=secret).refusal == Refusal.ARCHIVED
    # The name is free again.
    client.post(reverse("keys:create"), create_form(world, name="alice-key"))
    assert ApiKey.objects.filter(name="alice-key").count() == 2


def test_it_needs_csrf_for_actions(world, alice_key):
    from django.test import Client

    key, _ = alice_key
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.alice)
    response = client.post(reverse("keys:revoke", args=[key.public_id]))
    assert response.status_code == 403
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None


URLS = ["consumption:api_key", "keys:created", "keys:change_limits", "keys:revoke", "keys:archive"]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("username", ["bob", "charlie"])
def test_it_hides_alices_keys_from_others(client, world, alice_key, url, username):
    key, _ = alice_key
    client.force_login(getattr(world, username))
    path = reverse(url, args=[key.public_id])
    assert client.get(path).status_code == 404
    if url not in {"consumption:api_key", "keys:created"}:
        data = {"monthly_limit": "1", "total_limit": "1"}
        assert client.post(path, data).status_code == 404
    unchanged = ApiKey.objects.get(pk=key.pk)
    assert (unchanged.revoked_at, unchanged.archived_at, unchanged.monthly_limit) == (
        None,
        None,
        None,
    )


def test_it_answers_404_for_a_key_that_does_not_exist(client, world):
    client.force_login(world.alice)
    assert client.get(reverse("consumption:api_key", args=[uuid.uuid4()])).status_code == 404


def test_it_sends_anonymous_visitors_to_sign_in(client, world, alice_key):
    key, _ = alice_key
    for path in [reverse("keys:list"), reverse("keys:revoke", args=[key.public_id])]:
        response = client.get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_it_puts_a_fields_error_under_its_own_input(client, world):
    api_key_create(grant=world.grant, owner=world.bob, name="laptop")
    client.force_login(world.alice)
    page = client.post(reverse("keys:create"), create_form(world)).content.decode()
    name_input = page.index('name="name"')
    error = page.index("already exists")
    assert page.index('for="id_name"') < name_input < error < page.index('for="id_comment"')


def test_a_revoked_key_offers_no_limits_to_change(client, world, alice_key):
    key, _ = alice_key
    api_key_revoke(key=key)
    client.force_login(world.alice)
    change = reverse("keys:change_limits", args=[key.public_id])
    assert change not in client.get(reverse("keys:list")).content.decode()
    key_page = client.get(reverse("consumption:api_key", args=[key.public_id]))
    assert change not in key_page.content.decode()
    response = client.post(change, {"monthly_limit": "5", "total_limit": ""})
    assert "A revoked key&#x27;s limits can no longer change." in response.content.decode()
    assert ApiKey.objects.get(pk=key.pk).monthly_limit is None
