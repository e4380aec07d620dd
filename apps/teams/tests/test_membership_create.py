"""People who join a team later get the collective monthly limit of each of its grants; the
latest change still wins between collective and individual limits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.audit.models import AuditAction, AuditEntry
from apps.core.exceptions import Conflict
from apps.keys.services import api_key_create
from apps.limits.models import LimitScope, MemberLimitChange
from apps.limits.services import member_limit_change, member_limits_change_all
from apps.teams.models import Membership, Role
from apps.teams.services import membership_create, membership_delete
from tests.world import make_user

pytestmark = pytest.mark.django_db


def limit_of(world, user) -> Decimal | str | None:
    row = world.grant.member_limits.filter(user=user).first()
    return "no row" if row is None else row.monthly_limit


def set_all(world, limit) -> None:
    member_limits_change_all(grant=world.grant, monthly_limit=limit, changed_by=world.alice)


def test_it_gives_a_later_joiner_the_collective_limit(world):
    set_all(world, Decimal("5"))
    dave = make_user("dave")
    membership = membership_create(team=world.team, user=dave, actor=world.alice)
    assert (membership.role, limit_of(world, dave)) == (Role.MEMBER, Decimal("5"))
    change = MemberLimitChange.objects.get(user=dave)
    assert (change.before, change.after, change.scope, change.changed_by) == (
        None, Decimal("5"), LimitScope.COLLECTIVE, world.alice,
    )  # fmt: skip
    entry = AuditEntry.objects.get(target__contains="dave", action=AuditAction.MEMBER_LIMIT_CHANGED)
    assert (entry.action, entry.grant, entry.after) == (
        AuditAction.MEMBER_LIMIT_CHANGED, world.grant, {"monthly_limit": "5"},
    )  # fmt: skip


def test_it_shows_the_newcomers_limit_in_their_usage_status(world):
    set_all(world, Decimal("7.5"))
    dave = make_user("dave")
    membership_create(team=world.team, user=dave)
    _, secret = api_key_create(grant=world.grant, owner=dave, name="dave-key")
    response = APIClient().get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200
    assert response.json()["member"]["monthly_limit"] == "7.5"


def test_it_gives_no_limit_when_none_was_set_for_all(world):
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("3"), changed_by=world.alice
    )
    dave = make_user("dave")
    membership_create(team=world.team, user=dave)
    assert limit_of(world, dave) == "no row"
    assert not MemberLimitChange.objects.filter(user=dave).exists()


def test_it_records_nothing_for_a_collective_no_limit(world):
    set_all(world, None)
    dave = make_user("dave")
    membership_create(team=world.team, user=dave)
    assert limit_of(world, dave) == "no row"
    assert not MemberLimitChange.objects.filter(user=dave).exists()


def test_it_lets_a_later_change_for_all_overwrite_the_newcomers_limit(world):
    set_all(world, Decimal("5"))
    dave = make_user("dave")
    membership_create(team=world.team, user=dave)
    member_limit_change(
        grant=world.grant, user=dave, monthly_limit=Decimal("8"), changed_by=world.alice
    )
    assert limit_of(world, dave) == Decimal("8")
    set_all(world, Decimal("2"))
    assert limit_of(world, dave) == Decimal("2")


def test_it_keeps_an_individual_limit_set_after_the_collective_one_on_rejoining(world):
    set_all(world, Decimal("5"))
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("10"), changed_by=world.alice
    )
    membership_delete(membership=Membership.objects.get(user=world.bob), actor=world.alice)
    membership_create(team=world.team, user=world.bob, actor=world.alice)
    assert limit_of(world, world.bob) == Decimal("10")


def test_it_gives_a_collective_limit_set_while_away_on_rejoining(world):
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("10"), changed_by=world.alice
    )
    membership_delete(membership=Membership.objects.get(user=world.bob), actor=world.alice)
    set_all(world, Decimal("4"))
    membership_create(team=world.team, user=world.bob, actor=world.alice)
    assert limit_of(world, world.bob) == Decimal("4")
    last = MemberLimitChange.objects.filter(user=world.bob).first()
    assert (last.before, last.after, last.scope) == (
        Decimal("10"), Decimal("4"), LimitScope.COLLECTIVE,
    )  # fmt: skip


def test_it_refuses_someone_already_in_the_team(world):
    with pytest.raises(Conflict):
        membership_create(team=world.team, user=world.bob)
    assert Membership.objects.get(user=world.bob).role == Role.MEMBER


def test_it_shows_the_collective_limit_on_the_grant_page(client, world):
    client.force_login(world.bob)
    url = reverse("consumption:grant", args=[world.grant.public_id])
    assert "not set" in page_part(client.get(url), "collective-limit")
    set_all(world, Decimal("12.5"))
    shown = page_part(client.get(url), "collective-limit")
    assert "12.5 credits" in shown and "join the team later" in shown
    set_all(world, None)
    assert "no limit" in page_part(client.get(url), "collective-limit")


def test_it_prefills_the_collective_form_with_the_current_limit(client, world):
    set_all(world, Decimal("12.5"))
    client.force_login(world.alice)
    page = client.get(reverse("limits:all_members", args=[world.grant.public_id]))
    assert 'value="12.5"' in page.content.decode()  # as people write it


def page_part(response, testid: str) -> str:
    body = response.content.decode()
    start = body.index(f'data-testid="{testid}"')
    return body[start : body.index("</dd>", start)]
