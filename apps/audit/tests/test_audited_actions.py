"""Every audited admin action leaves one entry: who, what, when, before and after."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.audit.models import AuditAction, AuditEntry
from apps.grants.models import Grant
from apps.limits.models import MemberLimit
from apps.limits.services import member_limit_change
from tests.world import sign_in_staff

pytestmark = pytest.mark.django_db


def only_entry() -> AuditEntry:
    entries = list(AuditEntry.objects.all())
    assert len(entries) == 1, entries
    return entries[0]


def test_it_records_a_key_revoked_in_the_portal(client, world, bob_key):
    client.force_login(world.bob)
    client.post(reverse("keys:revoke", args=[bob_key.public_id]))
    entry = only_entry()
    assert (entry.action, entry.actor, entry.actor_name, entry.grant) == (
        AuditAction.KEY_REVOKED, world.bob, "bob", world.grant,
    )  # fmt: skip
    assert (entry.before, entry.after) == ({"revoked": False}, {"revoked": True})
    assert entry.target.startswith("API key bob-key (anv-") and entry.target.endswith("of bob")


def test_it_records_revoking_only_once(client, world, bob_key):
    client.force_login(world.bob)
    client.post(reverse("keys:revoke", args=[bob_key.public_id]))
    client.post(reverse("keys:revoke", args=[bob_key.public_id]))
    assert AuditEntry.objects.count() == 1


def test_it_records_a_key_archived_in_the_portal(client, world, bob_key):
    client.force_login(world.bob)
    client.post(reverse("keys:archive", args=[bob_key.public_id]))
    entry = only_entry()
    assert (entry.action, entry.actor) == (AuditAction.KEY_ARCHIVED, world.bob)
    assert entry.before == {"revoked": False, "archived": False}
    assert entry.after == {"revoked": True, "archived": True}


def test_it_records_key_limits_changed_in_the_portal(client, world, bob_key):
    client.force_login(world.bob)
    url = reverse("keys:change_limits", args=[bob_key.public_id])
    client.post(url, {"monthly_limit": "10.5", "total_limit": ""})
    client.post(url, {"monthly_limit": "10.500", "total_limit": ""})  # no change: no entry
    entry = only_entry()
    assert entry.action == AuditAction.KEY_LIMITS_CHANGED
    assert entry.before == {"monthly_limit": None, "total_limit": None}
    assert entry.after == {"monthly_limit": "10.5", "total_limit": None}
    assert entry.after_text == "Monthly limit: 10.5; Total limit: no limit"
    assert entry.change_text == "Monthly limit: no limit → 10.5; Total limit: no limit → no limit"


def test_it_records_key_actions_over_the_rest_api(world, bob_key):
    api = APIClient()
    api.force_login(world.bob)
    base = f"/api/v1/api_keys/{bob_key.public_id}"
    api.post(f"{base}/limits", {"total_credits_quota": "40"}, format="json")
    api.post(f"{base}/revoke")
    api.post(f"{base}/archive")
    actions = list(AuditEntry.objects.order_by("pk").values_list("action", "actor"))
    assert actions == [
        (AuditAction.KEY_LIMITS_CHANGED, world.bob.pk),
        (AuditAction.KEY_REVOKED, world.bob.pk),
        (AuditAction.KEY_ARCHIVED, world.bob.pk),
    ]


def test_it_records_a_key_revoked_by_staff_in_the_admin(client, world, bob_key, operator):
    sign_in_staff(client, operator)
    client.post(
        reverse("admin:keys_apikey_changelist"),
        {"action": "revoke", "_selected_action": [bob_key.pk]},
    )
    entry = only_entry()
    assert (entry.action, entry.actor, entry.grant) == (
        AuditAction.KEY_REVOKED, operator, world.grant,
    )  # fmt: skip


def grant_form(grant: Grant, credits: str) -> dict:
    return {
        "team": grant.team_id,
        "identifier": grant.identifier,
        "credits_allocated": credits,
        "valid_from": grant.valid_from.isoformat(),
        "valid_until": grant.valid_until.isoformat(),
    }


def test_it_records_credits_allocated_by_staff(client, world, operator):
    sign_in_staff(client, operator)
    url = reverse("admin:grants_grant_change", args=[world.grant.pk])
    response = client.post(url, grant_form(world.grant, "2500.25"))
    assert response.status_code == 302, response.content
    client.post(url, grant_form(world.grant, "2500.25"))  # saved again, unchanged: no entry
    entry = only_entry()
    assert (entry.action, entry.actor, entry.grant) == (
        AuditAction.CREDITS_ALLOCATED, operator, world.grant,
    )  # fmt: skip
    assert entry.before == {"credits_allocated": "1000"}
    assert entry.after == {"credits_allocated": "2500.25"}


def test_it_records_the_pool_of_a_new_grant(client, world, operator):
    sign_in_staff(client, operator)
    form = grant_form(world.grant, "300") | {"identifier": "new-grant"}
    response = client.post(reverse("admin:grants_grant_add"), form)
    assert response.status_code == 302, response.content
    entry = only_entry()
    assert entry.grant.identifier == "new-grant"
    assert entry.before == {"credits_allocated": None}
    assert entry.after == {"credits_allocated": "300"}


def test_it_records_a_member_limit_set_by_staff_in_the_admin(client, world, operator):
    sign_in_staff(client, operator)
    client.post(
        reverse("admin:limits_memberlimit_add"),
        {"grant": world.grant.pk, "user": world.bob.pk, "monthly_limit": "12.5"},
    )
    entry = only_entry()
    assert (entry.action, entry.actor, entry.after) == (
        AuditAction.MEMBER_LIMIT_CHANGED, operator, {"monthly_limit": "12.5"},
    )  # fmt: skip


def test_it_records_member_limits_set_by_the_grant_admin(client, world):
    client.force_login(world.alice)
    client.post(
        reverse("limits:member", args=[world.grant.public_id, world.bob.public_id]),
        {"monthly_limit": "7"},
    )
    client.post(reverse("limits:all_members", args=[world.grant.public_id]), {"monthly_limit": ""})
    entries = list(AuditEntry.objects.order_by("pk"))
    assert [(e.action, e.actor, e.grant) for e in entries] == [
        (AuditAction.MEMBER_LIMIT_CHANGED, world.alice, world.grant),
        (AuditAction.MEMBER_LIMITS_CHANGED_ALL, world.alice, world.grant),
    ]
    assert entries[1].before == {"alice": None, "bob": "7"}
    assert entries[1].after == {"monthly_limit": None}
    assert Decimal(entries[0].after["monthly_limit"]) == 7


def test_it_lifts_a_member_limit_in_the_admin_only_by_saving_it_empty(client, world, operator):
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("3"), changed_by=world.alice
    )
    limit = MemberLimit.objects.get()
    sign_in_staff(client, operator)
    delete = reverse("admin:limits_memberlimit_delete", args=[limit.pk])
    assert client.get(delete).status_code == 403
    client.post(reverse("admin:limits_memberlimit_change", args=[limit.pk]), {"monthly_limit": ""})
    assert MemberLimit.objects.get().monthly_limit is None
    last = AuditEntry.objects.order_by("-pk").first()
    assert (last.actor, last.before, last.after) == (
        operator, {"monthly_limit": "3"}, {"monthly_limit": None},
    )  # fmt: skip


def test_it_words_a_revocation_in_yes_and_no():
    from apps.audit.models import describe_change

    before, after = {"revoked": False, "archived": False}, {"revoked": True, "archived": True}
    assert describe_change(before, after) == "Archived: No → Yes; Revoked: No → Yes"
    assert describe_change({"bob": "5", "alice": None}, {"monthly_limit": "10"}) == (
        "before: alice: none; bob: 5; after: Monthly limit: 10"
    )
