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
    assert "chat-small" in body and "8,192 tokens" in body and "1.5" in body and "FC" in body


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


def row_of(response, name: str):
    return next(r for r in response.context["rows"] if r.model.name == name)


def test_it_explains_every_tag(client, world):
    client.force_login(world.bob)
    page = client.get(reverse("catalog:models")).content.decode()
    for tag in ("FC", "EMB", "VLM", "non-commercial", "Inactive", "Inaccessible"):
        assert f'tag-{tag.lower()}">{tag}</span></dt><dd>' in page


def test_it_says_why_a_model_is_inactive_with_its_last_health_check(client, world):
    from django.utils import timezone

    world.chat_model.healthy = False
    world.chat_model.last_checked_at = timezone.now()
    world.chat_model.save()
    client.force_login(world.bob)
    response = client.get(reverse("catalog:models"))
    assert row_of(response, "chat-small").inactive_reason == (
        "Its backend did not answer the last health check."
    )
    assert ": no answer." in response.content.decode()


def test_it_says_why_a_model_is_inaccessible_and_links_the_helpdesk(client, world, settings):
    settings.HELPDESK_URL = "https://helpdesk.example.org/new"
    client.force_login(world.bob)
    response = client.get(reverse("catalog:models"))
    assert row_of(response, "embed-small").inaccessible_reason == "None of your grants includes it."
    assert 'href="https://helpdesk.example.org/new"' in response.content.decode()


def test_it_offers_no_request_link_without_a_helpdesk(client, world, settings):
    settings.HELPDESK_URL = ""
    client.force_login(world.bob)
    assert "Request access" not in client.get(reverse("catalog:models")).content.decode()


def test_a_non_commercial_model_is_inaccessible_to_a_commercial_user(client, world):
    world.chat_model.tags = ["non-commercial"]
    world.chat_model.save()
    world.bob.affiliation = "commercial"
    world.bob.save()
    client.force_login(world.bob)
    row = row_of(client.get(reverse("catalog:models")), "chat-small")
    assert row.access_tag == "Inaccessible"
    assert row.inaccessible_reason.startswith("Non-commercial")
