"""Operators add and remove team members in the Django admin; it goes through the membership
services, so newcomers get the collective limit and people removed lose their keys."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.accounts.models import User
from apps.audit.models import AuditAction, AuditEntry
from apps.keys.auth import Refusal, api_key_authenticate
from apps.keys.services import api_key_create
from apps.limits.services import member_limits_change_all
from apps.teams.models import Membership, Role
from tests.world import make_user, sign_in_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    user = User.objects.create_superuser("operator", "op@example.org", "pw-operator-123")
    sign_in_staff(client, user)
    return user


def team_form(world, rows: list[dict], *, extra: dict | None = None) -> dict:
    """The team's change form with one inline row per existing membership (in ``rows``)."""
    existing = list(Membership.objects.filter(team=world.team).order_by("pk"))
    form = {
        "name": world.team.name,
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(len(existing)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        for field, value in row.items():
            form[f"memberships-{index}-{field}"] = value
        form[f"memberships-{index}-team"] = str(world.team.pk)
    return form | (extra or {})


def existing_rows(world, **changes) -> list[dict]:
    """``changes``: username → dict of fields to change in that person's row."""
    rows = []
    for membership in Membership.objects.filter(team=world.team).order_by("pk"):
        row = {"id": str(membership.pk), "user": str(membership.user_id), "role": membership.role}
        rows.append(row | changes.get(membership.user.username, {}))
    return rows


def save(client, world, rows) -> None:
    url = reverse("admin:teams_team_change", args=[world.team.pk])
    response = client.post(url, team_form(world, rows))
    assert response.status_code == 302, response.content.decode()[-3000:]


def test_it_gives_a_member_added_in_the_admin_the_collective_limit(client, world, operator):
    member_limits_change_all(grant=world.grant, monthly_limit=Decimal("6"), changed_by=world.alice)
    dave = make_user("dave")
    save(client, world, existing_rows(world) + [{"user": str(dave.pk), "role": Role.MEMBER}])
    assert Membership.objects.filter(team=world.team, user=dave).exists()
    assert world.grant.member_limits.get(user=dave).monthly_limit == Decimal("6")


def test_it_revokes_the_keys_of_a_member_removed_in_the_admin(
    client, world, operator, django_capture_on_commit_callbacks
):
    _, secret = api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    assert api_key_authenticate(secret=secret).ok
    with django_capture_on_commit_callbacks(execute=True):
        save(client, world, existing_rows(world, bob={"DELETE": "on"}))
    assert not Membership.objects.filter(team=world.team, user=world.bob).exists()
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED


def test_it_changes_a_role_in_the_admin(client, world, operator):
    save(client, world, existing_rows(world, bob={"role": Role.MANAGER}))
    assert Membership.objects.get(team=world.team, user=world.bob).role == Role.MANAGER
    entry = AuditEntry.objects.get(action=AuditAction.MEMBER_ROLE_CHANGED)
    assert (entry.actor, entry.grant, entry.target) == (operator, world.grant, "bob in team a-team")
    assert (entry.before, entry.after) == ({"role": "member"}, {"role": "manager"})


def test_it_treats_another_person_in_a_row_as_one_leaving_and_one_joining(
    client, world, operator, django_capture_on_commit_callbacks
):
    member_limits_change_all(grant=world.grant, monthly_limit=Decimal("6"), changed_by=world.alice)
    _, secret = api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    dave = make_user("dave")
    with django_capture_on_commit_callbacks(execute=True):
        save(client, world, existing_rows(world, bob={"user": str(dave.pk)}))
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED
    assert world.grant.member_limits.get(user=dave).monthly_limit == Decimal("6")
    members = set(
        Membership.objects.filter(team=world.team).values_list("user__username", flat=True)
    )
    assert members == {"alice", "dave"}
