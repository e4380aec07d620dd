"""The playground's endpoint: only the signed-in owner's key, by the gateway's own rules; it
needs CSRF; a refusal is the gateway's."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from apps.keys.services import api_key_create, api_key_revoke
from apps.usage.models import Hold, LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)  # the key is read in a worker thread

BODY = json.dumps({"model": "chat-small", "messages": [{"role": "user", "content": "Hi"}]})


def post(client, key):
    url = reverse("playground:chat", args=[key.public_id])
    return client.post(url, BODY, content_type="application/json")


@pytest.mark.parametrize("username", ["alice", "charlie"])
def test_someone_elses_key_is_refused_as_unknown(client, world, username):
    key, _ = api_key_create(grant=world.grant, owner=world.bob, name="bobs")
    client.force_login(getattr(world, username))
    response = post(client, key)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid API key."
    assert not Hold.objects.exists() and not LedgerEntry.objects.exists()


def test_a_revoked_key_is_refused_as_by_the_api(client, world):
    key, _ = api_key_create(grant=world.grant, owner=world.bob, name="gone")
    api_key_revoke(key=key)
    client.force_login(world.bob)
    response = post(client, key)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "This API key has been revoked."


def test_it_needs_a_signed_in_person(client, world):
    key, _ = api_key_create(grant=world.grant, owner=world.bob, name="bobs")
    assert post(client, key).status_code == 401


def test_it_needs_csrf(world):
    key, _ = api_key_create(grant=world.grant, owner=world.bob, name="bobs")
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.bob)
    assert post(client, key).status_code == 403
    assert not LedgerEntry.objects.exists()


def test_the_page_offers_only_the_persons_active_keys_and_callable_models(client, world):
    api_key_create(grant=world.grant, owner=world.bob, name="bobs")
    api_key_create(grant=world.grant, owner=world.alice, name="alices")
    client.force_login(world.bob)
    page = client.get(reverse("playground:page")).content.decode()
    assert "bobs" in page and "alices" not in page
    assert '<option value="chat-small">' in page and "embed-small" not in page
