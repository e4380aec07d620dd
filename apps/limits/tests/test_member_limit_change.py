"""A grant admin's collective and individual limits overwrite each other; the latest counts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.audit.models import AuditAction, AuditEntry
from apps.core.exceptions import ApplicationError
from apps.limits.models import LimitScope, MemberLimit, MemberLimitChange
from apps.limits.services import member_limit_change, member_limits_change_all

pytestmark = pytest.mark.django_db


def limits(world) -> dict[str, Decimal | None]:
    rows = MemberLimit.objects.filter(grant=world.grant).select_related("user")
    return {row.user.username: row.monthly_limit for row in rows}


def test_it_lets_the_collective_limit_overwrite_an_earlier_individual_one(world):
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("10"), changed_by=world.alice
    )
    member_limits_change_all(grant=world.grant, monthly_limit=Decimal("5"), changed_by=world.alice)
    assert limits(world) == {"alice": Decimal("5"), "bob": Decimal("5")}


def test_it_lets_an_individual_limit_overwrite_an_earlier_collective_one(world):
    member_limits_change_all(grant=world.grant, monthly_limit=Decimal("5"), changed_by=world.alice)
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("10"), changed_by=world.alice
    )
    assert limits(world) == {"alice": Decimal("5"), "bob": Decimal("10")}


def test_it_lifts_every_limit_with_an_empty_collective_limit(world):
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("10"), changed_by=world.alice
    )
    member_limits_change_all(grant=world.grant, monthly_limit=None, changed_by=world.alice)
    assert limits(world) == {"alice": None, "bob": None}


def test_it_keeps_the_history_of_every_change(world):
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("10"), changed_by=world.alice
    )
    member_limits_change_all(grant=world.grant, monthly_limit=Decimal("5"), changed_by=world.alice)
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("7.25"), changed_by=world.alice
    )
    history = [
        (change.user.username, change.before, change.after, change.scope, change.changed_by)
        for change in MemberLimitChange.objects.order_by("created", "user__username")
    ]
    assert history == [
        ("bob", None, Decimal("10"), LimitScope.INDIVIDUAL, world.alice),
        ("alice", None, Decimal("5"), LimitScope.COLLECTIVE, world.alice),
        ("bob", Decimal("10"), Decimal("5"), LimitScope.COLLECTIVE, world.alice),
        ("bob", Decimal("5"), Decimal("7.25"), LimitScope.INDIVIDUAL, world.alice),
    ]


def test_it_records_each_action_once_in_the_audit_log(world):
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("10"), changed_by=world.alice
    )
    member_limits_change_all(grant=world.grant, monthly_limit=Decimal("5"), changed_by=world.alice)
    entries = list(AuditEntry.objects.order_by("created", "pk"))
    assert [(e.action, e.grant, e.actor, e.before, e.after) for e in entries] == [
        (
            AuditAction.MEMBER_LIMIT_CHANGED,
            world.grant,
            world.alice,
            {"monthly_limit": None},
            {"monthly_limit": "10"},
        ),
        (
            AuditAction.MEMBER_LIMITS_CHANGED_ALL,
            world.grant,
            world.alice,
            {"alice": None, "bob": "10"},
            {"monthly_limit": "5"},
        ),
    ]
    assert entries[0].target == "member bob"


@pytest.mark.parametrize("bad", [Decimal("-1"), Decimal("NaN"), Decimal("Infinity")])
def test_it_refuses_a_negative_or_non_finite_limit_and_changes_nothing(world, bad):
    with pytest.raises(ApplicationError):
        member_limits_change_all(grant=world.grant, monthly_limit=bad, changed_by=world.alice)
    with pytest.raises(ApplicationError):
        member_limit_change(
            grant=world.grant, user=world.bob, monthly_limit=bad, changed_by=world.alice
        )
    assert not MemberLimit.objects.exists()
    assert not MemberLimitChange.objects.exists()
    assert not AuditEntry.objects.exists()


def test_it_refuses_someone_outside_the_team(world):
    with pytest.raises(ApplicationError):
        member_limit_change(
            grant=world.grant, user=world.charlie, monthly_limit=Decimal(1), changed_by=world.alice
        )
    assert not MemberLimitChange.objects.exists()
