"""The Quickstart page: the base URL and examples naming a model the person may use."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_it_names_the_base_url_and_a_model_of_the_persons_grants(client, world):
    client.force_login(world.bob)
    page = client.get(reverse("keys:quickstart")).content.decode()
    assert "http://testserver/api/v1" in page
    assert 'model="chat-small"' in page
    assert "alice-grant" in page


def test_an_outsider_sees_no_other_teams_grant_or_model(client, world):
    client.force_login(world.charlie)
    page = client.get(reverse("keys:quickstart")).content.decode()
    assert "alice-grant" not in page
    assert "chat-small" not in page
    assert "MODEL-NAME" in page and "You are in no grant yet" in page


def test_a_commercial_user_is_never_shown_a_non_commercial_model(client, world):
    world.chat_model.tags = ["non-commercial"]
    world.chat_model.save()
    world.bob.affiliation = "commercial"
    world.bob.save()
    client.force_login(world.bob)
    page = client.get(reverse("keys:quickstart")).content.decode()
    assert "chat-small" not in page
