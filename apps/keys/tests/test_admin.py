from __future__ import annotations

import pytest
from django.urls import reverse

from apps.accounts.models import User
from apps.keys.auth import Refusal, api_key_authenticate
from apps.keys.models import ApiKey
from tests.world import sign_in_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    admin = User.objects.create_superuser("operator", "op@example.org", "pw-operator-123")
    sign_in_staff(client, admin)
    return client


def test_it_lists_keys_without_their_digest(staff_client, alice_key):
    key, _ = alice_key
    response = staff_client.get(reverse("admin:keys_apikey_changelist"))
    assert response.status_code == 200 and b"alice-key" in response.content
    page = staff_client.get(reverse("admin:keys_apikey_change", args=[key.pk]))
    assert page.status_code == 200 and key.digest.encode() not in page.content


def test_it_revokes_through_the_service(staff_client, alice_key, run_on_commit):
    key, secret = alice_key
    assert api_key_authenticate(secret=secret).ok
    staff_client.post(
        reverse("admin:keys_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED


def test_it_offers_no_way_to_add_keys_without_a_secret(staff_client):
    assert staff_client.get(reverse("admin:keys_apikey_add")).status_code == 403
