"""The audit log is read by the grant's admins (their grant) and by staff (everything)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.grants.models import Grant
from apps.limits.services import member_limit_change
from apps.teams.models import Membership, Role, Team
from tests.tables import csv_rows, html_table
from tests.world import make_user

pytestmark = pytest.mark.django_db


def grant_url(grant) -> str:
    return reverse("audit:grant", args=[grant.public_id])


@pytest.fixture
def other_grant(world) -> Grant:
    """Dave's grant in another team, with one audited action of its own."""
    dave = make_user("dave")
    team = Team.objects.create(name="d-team")
    Membership.objects.create(team=team, user=dave, role=Role.MANAGER)
    grant = Grant.objects.create(
        team=team,
        identifier="dave-grant",
        credits_allocated=Decimal(5),
        valid_from=world.grant.valid_from,
        valid_until=world.grant.valid_until,
    )
    audit_record(
        actor=dave,
        action=AuditAction.CREDITS_ALLOCATED,
        grant=grant,
        target="grant dave-grant",
        after={"credits_allocated": Decimal(5)},
    )
    return grant


@pytest.fixture
def limit_changed(world):
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("12.5"), changed_by=world.alice
    )


def test_it_shows_the_grants_entries_to_its_admin(client, world, other_grant, limit_changed):
    client.force_login(world.alice)
    response = client.get(grant_url(world.grant))
    assert response.status_code == 200
    rows = html_table(response.content, "audit")
    assert rows[0] == ["When", "Who", "Action", "Target", "Change"]
    assert [row[1:] for row in rows[1:]] == [
        ["alice", "Member monthly limit changed", "member bob", "Monthly limit: no limit → 12.5"]
    ]
    assert b"dave-grant" not in response.content


def test_it_refuses_a_plain_member_with_403(client, world, limit_changed):
    client.force_login(world.bob)
    assert client.get(grant_url(world.grant)).status_code == 403
    assert client.get(grant_url(world.grant) + "?format=csv&table=audit").status_code == 403


def test_it_answers_outsiders_with_404(client, world, other_grant):
    client.force_login(world.charlie)
    assert client.get(grant_url(world.grant)).status_code == 404
    client.force_login(world.alice)  # an admin of another grant is an outsider here
    assert client.get(grant_url(other_grant)).status_code == 404
    assert client.get(reverse("audit:grant", args=[uuid.uuid4()])).status_code == 404


def test_it_shows_every_grants_entries_to_staff(client, world, other_grant, limit_changed):
    staff = make_user("operator", is_staff=True)
    client.force_login(staff)
    assert client.get(grant_url(world.grant)).status_code == 200
    assert client.get(grant_url(other_grant)).status_code == 200
    rows = html_table(client.get(reverse("audit:all")).content, "audit")
    assert sorted(row[3] for row in rows[1:]) == ["alice-grant", "dave-grant"]


def test_it_hides_the_whole_log_from_everyone_but_staff(client, world, other_grant):
    for user in (world.alice, world.bob, world.charlie):
        client.force_login(user)
        assert client.get(reverse("audit:all")).status_code == 404


def test_it_downloads_the_table_as_csv(client, world, limit_changed):
    client.force_login(world.alice)
    page = client.get(grant_url(world.grant))
    response = client.get(grant_url(world.grant), {"format": "csv", "table": "audit"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="alice-grant-audit.csv"'
    assert csv_rows(response.content) == html_table(page.content, "audit")


def test_it_answers_404_for_an_unknown_table(client, world):
    client.force_login(world.alice)
    response = client.get(grant_url(world.grant), {"format": "csv", "table": "nope"})
    assert response.status_code == 404
