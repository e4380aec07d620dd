"""The signed-in user's own keys over the REST API (session authentication)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.keys.auth import Refusal, api_key_authenticate
from apps.keys.models import ApiKey
from apps.keys.services import api_key_archive, api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


def url(key=None, action: str = "") -> str:
    if key is None:
        return f"/api/v1/api_keys{action}"
    return f"/api/v1/api_keys/{key.public_id}" + (f"/{action}" if action else "")


def test_it_lists_the_users_own_keys(api, world, alice_key):
    api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    archived, _ = api_key_create(grant=world.grant, owner=world.alice, name="old")
    api_key_archive(key=archived)
    api.force_login(world.alice)
    rows = api.get(url()).json()
    assert [r["name"] for r in rows] == ["alice-key"]
    assert rows[0]["status"] == "active" and rows[0]["grant"] == "alice-grant"
    assert rows[0]["prefix"] == alice_key[0].display_prefix and "key" not in rows[0]
    assert [r["name"] for r in api.get(url(), {"archived": "true"}).json()] == ["old"]


def test_it_creates_a_key_and_returns_the_secret_once(api, world):
    api.force_login(world.bob)
    body = {"name": "script", "grant_id": "alice-grant", "monthly_credits_quota": 5}
    response = api.post(url(action="/create"), body, format="json")
    assert response.status_code == 201
    data = response.json()
    assert api_key_authenticate(secret=data["key"]).key.owner == world.bob
    assert data["monthly_credits_quota"] == "5" and data["total_credits_quota"] is None
    assert "key" not in api.get(url(ApiKey.objects.get(name="script"))).json()


def test_it_answers_409_for_a_duplicate_name(api, world, alice_key):
    api.force_login(world.alice)
    body = {"name": "alice-key", "grant_id": str(world.grant.public_id)}
    response = api.post(url(action="/create"), body, format="json")
    assert response.status_code == 409 and response.json()["error"]["param"] == "name"


def test_it_revokes(api, world, alice_key, run_on_commit):
    key, secret = alice_key
    assert api_key_authenticate(secret=secret).ok
    api.force_login(world.alice)
    response = api.post(url(key, "revoke"))
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED


def test_it_archives(api, world, alice_key, run_on_commit):
    key, secret = alice_key
    api.force_login(world.alice)
    data = api.post(url(key, "archive")).json()
    assert data["archived_at"] and data["status"] == "revoked"
    assert api_key_authenticate(secret=secret).refusal == Refusal.ARCHIVED


def test_it_changes_limits_keeping_absent_ones(api, world, alice_key):
    key, _ = alice_key
    api.force_login(world.alice)
    api.post(url(key, "limits"), {"total_credits_quota": "40"}, format="json")
    response = api.post(url(key, "limits"), {"monthly_credits_quota": 4}, format="json")
    assert response.status_code == 200
    key.refresh_from_db()
    assert (key.monthly_limit, key.total_limit) == (Decimal(4), Decimal(40))
    api.post(url(key, "limits"), {"total_credits_quota": None}, format="json")
    key.refresh_from_db()
    assert key.total_limit is None


def test_it_refuses_to_change_the_expiry(api, world, alice_key):
    key, _ = alice_key
    api.force_login(world.alice)
    later = (timezone.now() + dt.timedelta(days=400)).isoformat()
    response = api.post(url(key, "limits"), {"expires_at": later}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "expires_at" and "can not change" in error["message"]
    assert ApiKey.objects.get(pk=key.pk).expires_at == key.expires_at


def test_it_refuses_negative_limits(api, world, alice_key):
    key, _ = alice_key
    api.force_login(world.alice)
    response = api.post(url(key, "limits"), {"monthly_credits_quota": -2}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "monthly_credits_quota"


@pytest.mark.parametrize("username", ["bob", "charlie"])
@pytest.mark.parametrize(
    ("method", "action"), [("get", ""), ("post", "revoke"), ("post", "archive"), ("post", "limits")]
)
def test_it_hides_alices_keys_from_others(api, world, alice_key, username, method, action):
    key, _ = alice_key
    api.force_login(getattr(world, username))
    response = getattr(api, method)(url(key, action), {"monthly_credits_quota": 1}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    unchanged = ApiKey.objects.get(pk=key.pk)
    assert (unchanged.revoked_at, unchanged.archived_at, unchanged.monthly_limit) == (
        None,
        None,
        None,
    )


def test_it_refuses_a_management_key_with_403(api, world, alice_management_key):
    _, secret = alice_management_key
    response = api.get(url(), HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 403
    assert "management key" in response.json()["error"]["message"]


def test_it_refuses_an_api_key_with_403(api, world, alice_key):
    key, secret = alice_key
    response = api.post(url(key, "revoke"), HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 403
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_it_refuses_anonymous_callers(api, world):
    response = api.get(url())
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_authenticated"


def test_it_needs_the_csrf_token(world, alice_key):
    key, _ = alice_key
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(world.alice)
    response = api.post(url(key, "revoke"))
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_it_documents_every_operation_with_authorize_and_no_cdn(client, world):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert paths["/api/v1/management/api_keys/create"]["post"]["security"] == [
        {"ManagementKey": []}
    ]
    assert schema["components"]["securitySchemes"]["ManagementKey"]["scheme"] == "bearer"
    for path in [
        "/api/v1/api_keys",
        "/api/v1/api_keys/create",
        "/api/v1/api_keys/{public_id}/limits",
    ]:
        assert path in paths
    docs = client.get("/api/docs").content.decode()
    assert "swagger-ui" in docs
    # Served from our own static files: no CDN host (a random CSRF token may spell "cdn")
    assert not re.search(r"(src|href)=[\"']https?://", docs)
    assert "jsdelivr" not in docs and "unpkg" not in docs
