from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.grants.models import Grant

pytestmark = pytest.mark.django_db


def test_it_shows_a_tile_per_grant_of_the_users_teams(client, world):
    client.force_login(world.bob)
    response = client.get(reverse("grants:list"))
    assert response.status_code == 200
    assert b"alice-grant" in response.content
    assert b"<dd>1,000</dd>" in response.content  # thousands separated, not 1E+3


def test_it_shows_no_tiles_to_an_outsider(client, world):
    client.force_login(world.charlie)
    response = client.get(reverse("grants:list"))
    assert b"alice-grant" not in response.content


def test_it_shows_the_grant_page_to_members(client, world):
    client.force_login(world.bob)
    response = client.get(reverse("consumption:grant", args=[world.grant.public_id]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "chat-small" in body and "embed-small" not in body
    assert "alice" in body and "bob" in body
    assert str(world.grant.public_id) in body


def test_it_returns_404_to_an_outsider_guessing_the_url(client, world):
    client.force_login(world.charlie)
    response = client.get(reverse("consumption:grant", args=[world.grant.public_id]))
    assert response.status_code == 404


def test_it_returns_the_same_404_for_a_grant_that_does_not_exist(client, world):
    client.force_login(world.charlie)
    response = client.get(reverse("consumption:grant", args=[uuid.uuid4()]))
    assert response.status_code == 404


def test_it_sends_anonymous_visitors_to_sign_in(client, world):
    response = client.get(reverse("consumption:grant", args=[world.grant.public_id]))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_it_links_each_tile_to_key_creation_for_that_grant(client, world):
    client.force_login(world.bob)
    body = client.get(reverse("grants:list")).content.decode()
    link = f'href="{reverse("keys:create")}?grant={world.grant.public_id}"'
    assert link in body and "Generate API key" in body
    # …and the key creation page it opens has that grant chosen.
    page = client.get(f"{reverse('keys:create')}?grant={world.grant.public_id}")
    assert page.context["form"]["grant"].value() == str(world.grant.public_id)


def test_it_offers_no_new_keys_for_a_grant_that_has_ended(client, world):
    today = timezone.localdate()
    Grant.objects.filter(pk=world.grant.pk).update(
        valid_from=today - dt.timedelta(days=40), valid_until=today - dt.timedelta(days=1)
    )
    client.force_login(world.bob)
    tiles = client.get(reverse("grants:list")).content.decode()
    assert "alice-grant" in tiles and "Generate API key" not in tiles and "ended" in tiles
    detail = client.get(reverse("consumption:grant", args=[world.grant.public_id])).content.decode()
    assert 'data-testid="generate-key"' not in detail
    assert 'data-testid="no-new-keys"' in detail
