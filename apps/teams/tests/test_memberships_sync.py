"""An identity provider's teams claim, synchronised at each sign-in: teams joined, roles changed
and teams left, each in the audit log, leaving taking the person's keys out of use."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditAction, AuditEntry
from apps.keys.auth import Refusal, api_key_authenticate
from apps.keys.services import api_key_create
from apps.teams.models import Membership, Role, Team
from apps.teams.services import memberships_sync
from tests.world import make_user

pytestmark = pytest.mark.django_db


def teams_of(user) -> dict[str, tuple[str, bool]]:
    rows = Membership.objects.filter(user=user).select_related("team")
    return {row.team.name: (row.role, row.provider_managed) for row in rows}


def test_it_joins_the_named_teams_creating_new_ones(world):
    dave = make_user("dave")
    memberships_sync(user=dave, roles={"a-team": Role.MANAGER, "plg-team-7": Role.MEMBER})
    assert teams_of(dave) == {"a-team": ("manager", True), "plg-team-7": ("member", True)}
    assert Team.objects.filter(name="plg-team-7").exists()
    entry = AuditEntry.objects.get(action=AuditAction.MEMBER_ADDED, grant=world.grant)
    assert (entry.actor, entry.target) == (None, "dave in team a-team")
    assert entry.after == {"role": "manager", "via": "identity provider"}


def test_it_leaves_teams_no_longer_named_revoking_the_keys_there(world):
    dave = make_user("dave")
    memberships_sync(user=dave, roles={"a-team": Role.MEMBER})
    _, secret = api_key_create(grant=world.grant, owner=dave, name="dave-key")
    memberships_sync(user=dave, roles={})
    assert teams_of(dave) == {}
    assert api_key_authenticate(secret=secret).refusal == Refusal.REVOKED
    removed = AuditEntry.objects.get(action=AuditAction.MEMBER_REMOVED)
    assert (removed.grant, removed.before) == (world.grant, {"role": "member"})


def test_it_changes_a_role_and_logs_it(world):
    memberships_sync(user=world.bob, roles={"a-team": Role.MANAGER})
    assert teams_of(world.bob) == {"a-team": ("manager", True)}
    entry = AuditEntry.objects.get(action=AuditAction.MEMBER_ROLE_CHANGED)
    assert (entry.before, entry.after) == (
        {"role": "member"},
        {"role": "manager", "via": "identity provider"},
    )


def test_it_keeps_memberships_given_by_hand_that_the_claim_never_named(world):
    memberships_sync(user=world.bob, roles={"plg-team-7": Role.MEMBER})
    assert teams_of(world.bob) == {"a-team": ("member", False), "plg-team-7": ("member", True)}


def test_it_changes_nothing_and_logs_nothing_when_the_claim_is_the_same(world):
    dave = make_user("dave")
    memberships_sync(user=dave, roles={"a-team": Role.MEMBER})
    count = AuditEntry.objects.count()
    memberships_sync(user=dave, roles={"a-team": Role.MEMBER})
    assert AuditEntry.objects.count() == count


def test_it_skips_a_name_that_can_not_be_a_team(world):
    memberships_sync(user=world.charlie, roles={"no spaces allowed": Role.MEMBER})
    assert teams_of(world.charlie) == {}
