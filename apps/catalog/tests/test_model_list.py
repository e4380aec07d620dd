from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def row_tags(response, name: str) -> list[str]:
    row = next(r for r in response.context["rows"] if r.model.name == name)
    return row.tags


def test_it_marks_models_accessible_through_the_users_grants(client, world):
    client.force_login(world.bob)
    response = client.get(reverse("catalog:models"))
    assert response.status_code == 200
    assert "Accessible" in row_tags(response, "chat-small")
    assert "Inaccessible" in row_tags(response, "embed-small")


def test_it_shows_every_model_inaccessible_to_an_outsider(client, world):
    client.force_login(world.charlie)
    response = client.get(reverse("catalog:models"))
    assert "Inaccessible" in row_tags(response, "chat-small")
    assert "Inaccessible" in row_tags(response, "embed-small")


def test_it_shows_prices_tags_and_context_window(client, world):
    client.force_login(world.bob)
    body = client.get(reverse("catalog:models")).content.decode()
    assert "chat-small" in body and "8192" in body and "1.5" in body and "FC" in body


def test_it_filters_by_tag(client, world):
    client.force_login(world.bob)
    response = client.get(reverse("catalog:models"), {"tag": "EMB"})
    names = [row.model.name for row in response.context["rows"]]
    assert names == ["embed-small"]


def test_it_filters_by_computed_tags(client, world):
    world.embed_model.active = False
    world.embed_model.save()
    client.force_login(world.bob)
    response = client.get(reverse("catalog:models"), {"tag": "Inactive"})
    assert [row.model.name for row in response.context["rows"]] == ["embed-small"]


def test_it_ignores_an_unknown_tag(client, world):
    client.force_login(world.bob)
    response = client.get(reverse("catalog:models"), {"tag": "<script>"})
    assert response.status_code == 200
    assert len(response.context["rows"]) == 2


def test_it_requires_sign_in(client, world):
    response = client.get(reverse("catalog:models"))
    assert response.status_code == 302
