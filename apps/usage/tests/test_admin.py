from __future__ import annotations

import pytest
from django.urls import reverse

from apps.usage.tests.conftest import place, spend
from tests.world import sign_in_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, world):
    world.alice.is_staff = world.alice.is_superuser = True
    world.alice.save()
    sign_in_staff(client, world.alice)
    return client


@pytest.mark.parametrize("model", ["ledgerentry", "hold", "keymonthcounter", "membermonthcounter"])
def test_it_lists_the_accounting_in_the_admin(admin_client, world, key, model):
    spend(key, world, prompt_tokens=10, completion_tokens=10)
    place(key, world)
    response = admin_client.get(reverse(f"admin:usage_{model}_changelist"))
    assert response.status_code == 200


def test_it_offers_no_way_to_edit_the_ledger(admin_client):
    assert admin_client.get(reverse("admin:usage_ledgerentry_add")).status_code == 403
