"""Someone who leaves (or is removed from) a team loses API access through its grants at once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditAction, AuditEntry
from apps.core.exceptions import NotFound
from apps.grants.models import Grant
from apps.keys.auth import Refusal, api_key_authenticate
from apps.keys.models import ApiKey
from apps.keys.services import api_key_create
from apps.teams.models import Membership, Team
from apps.teams.services import membership_create, membership_delete

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        yield callbacks


def other_grant(world) -> Grant:
    """Bob's second team, with a grant of its own."""
    team = Team.objects.create(name="b-team")
    membership_create(team=team, user=world.bob)
    today = timezone.localdate()
    return Grant.objects.create(
        team=team,
        identifier="b-grant",
        credits_allocated=Decimal("10"),
        valid_from=today,
        valid_until=today + dt.timedelta(days=10),
    )


def remove_bob(world):
    return membership_delete(
        membership=Membership.objects.get(team=world.team, user=world.bob), actor=world.alice
    )


def test_it_revokes_the_members_keys_in_the_teams_grants_at_once(world, run_on_commit):
    bob_key, bob_secret = api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    assert api_key_authenticate(secret=bob_secret).ok  # now in the key cache
    remove_bob(world)
    revoked = ApiKey.objects.filter(revoked_at__isnull=False)
    assert [key.pk for key in revoked] == [bob_key.pk]
    assert api_key_authenticate(secret=bob_secret).refusal == Refusal.REVOKED
    assert not Membership.objects.filter(team=world.team, user=world.bob).exists()


def test_it_leaves_other_people_and_other_teams_keys_working(world, run_on_commit):
    _, alice_secret = api_key_create(grant=world.grant, owner=world.alice, name="alice-key")
    _, elsewhere_secret = api_key_create(grant=other_grant(world), owner=world.bob, name="b")
    remove_bob(world)
    assert api_key_authenticate(secret=alice_secret).ok
    assert api_key_authenticate(secret=elsewhere_secret).ok


def test_it_records_each_revocation_with_the_reason_in_the_grants_audit_log(world):
    api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    remove_bob(world)
    entry = AuditEntry.objects.get(action=AuditAction.KEY_REVOKED)
    assert (entry.grant, entry.actor) == (world.grant, world.alice)
    assert "bob-key" in entry.target
    assert entry.after == {"revoked": True, "reason": "bob left team a-team"}


def test_it_refuses_new_keys_for_the_teams_grants_afterwards(world):
    remove_bob(world)
    with pytest.raises(NotFound):
        api_key_create(grant=world.grant, owner=world.bob, name="sneaky")


def test_it_hides_the_teams_grants_from_the_former_member(client, world):
    remove_bob(world)
    client.force_login(world.bob)
    assert client.get(reverse("consumption:grant", args=[world.grant.public_id])).status_code == 404
