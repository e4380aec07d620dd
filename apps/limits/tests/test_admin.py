from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.limits.models import MemberLimit
from apps.limits.services import member_limit_change
from tests.world import sign_in_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, world):
    world.alice.is_staff = world.alice.is_superuser = True
    world.alice.save()
    sign_in_staff(client, world.alice)
    return client


def test_it_lists_member_limits_and_their_history_in_the_admin(admin_client, world):
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal(5), changed_by=world.alice
    )
    for url in ("admin:limits_memberlimit_changelist", "admin:limits_memberlimitchange_changelist"):
        assert admin_client.get(reverse(url)).status_code == 200


def test_it_sets_a_member_limit_recording_who_changed_it(admin_client, world):
    response = admin_client.post(
        reverse("admin:limits_memberlimit_add"),
        {"grant": world.grant.pk, "user": world.bob.pk, "monthly_limit": "12.5"},
    )
    assert response.status_code == 302
    limit = MemberLimit.objects.get()
    assert (limit.user, limit.monthly_limit, limit.changed_by) == (
        world.bob, Decimal("12.5"), world.alice,
    )  # fmt: skip


def test_it_refuses_a_member_limit_for_an_outsider(admin_client, world):
    response = admin_client.post(
        reverse("admin:limits_memberlimit_add"),
        {"grant": world.grant.pk, "user": world.charlie.pk, "monthly_limit": "1"},
    )
    assert response.status_code == 200
    assert b"not a member" in response.content
    assert not MemberLimit.objects.exists()
