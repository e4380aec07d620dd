"""The one place that decides who may see and do what in a team's scope.

Outsiders get 404 (a grant's existence is not leaked); a member without the needed role
gets 403. Views call these helpers and never query memberships themselves. The apps above
teams build their own rules on these: a key's owner (``apps.keys.access``), a statement's
readers (``apps.statements.access``).
"""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.grants.models import Grant
from apps.teams.models import Membership


def membership_for(*, user, team) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(team=team, user=user).first()


def grant_for_member(*, user, public_id) -> tuple[Grant, Membership]:
    """The grant with this public id, if ``user`` is in its team; otherwise 404 (also for a
    public id that is no UUID, as a query string may bring)."""
    try:
        public_id = public_id if isinstance(public_id, uuid.UUID) else uuid.UUID(str(public_id))
    except ValueError:
        raise Http404("No such grant.") from None
    grant = Grant.objects.select_related("team").filter(public_id=public_id).first()
    membership = membership_for(user=user, team=grant.team) if grant else None
    if membership is None:
        raise Http404("No such grant.")
    return grant, membership


def grant_for_manager(*, user, public_id) -> tuple[Grant, Membership]:
    """As ``grant_for_member``, and 403 unless the user manages the grant's team."""
    grant, membership = grant_for_member(user=user, public_id=public_id)
    if not membership.can_manage_members:
        raise PermissionDenied("Only the team's managers can do this.")
    return grant, membership


def grant_for_member_by_reference(*, user, reference: str) -> Grant:
    """A grant of one of the user's teams, by public id or by identifier; otherwise 404, the
    same whether the grant does not exist or belongs to another team."""
    grants = Grant.objects.select_related("team").filter(team__memberships__user=user)
    try:
        grant = grants.filter(public_id=uuid.UUID(str(reference))).first()
    except ValueError:
        grant = grants.filter(identifier=str(reference)).first()
    if grant is None:
        raise Http404("No such grant.")
    return grant


def grant_for_auditor(*, user, public_id) -> Grant:
    """A grant whose audit log the user may read: staff read every grant's; otherwise as
    ``grant_for_manager`` (404 to outsiders, 403 to plain members)."""
    if user.is_authenticated and user.is_staff:
        grant = Grant.objects.select_related("team").filter(public_id=public_id).first()
        if grant is None:
            raise Http404("No such grant.")
        return grant
    grant, _ = grant_for_manager(user=user, public_id=public_id)
    return grant


def staff_only(*, user) -> None:
    """Pages about every grant at once (the whole audit log) exist only for staff."""
    if not (user.is_authenticated and user.is_staff):
        raise Http404("No such page.")


def grant_member(*, grant: Grant, user_public_id) -> Membership:
    """The membership of the person with this public id in the grant's team; otherwise 404."""
    membership = (
        Membership.objects.select_related("user")
        .filter(team_id=grant.team_id, user__public_id=user_public_id)
        .first()
    )
    if membership is None:
        raise Http404("No such member.")
    return membership
