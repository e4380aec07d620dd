"""Who may read a monthly statement, on top of the team rules of ``apps.teams.access``."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.statements.models import Statement, StatementKind
from apps.teams.access import membership_for


def statement_for_viewer(*, user, public_id) -> Statement:
    """A monthly statement: the grant's managers read all of the grant's; a member reads their
    own member and key statements, gets 403 for the grant's own statement and 404 for another
    member's (as for another member's key). Outsiders get 404."""
    statement = (
        Statement.objects.select_related("grant__team", "user", "api_key")
        .filter(public_id=public_id)
        .first()
    )
    membership = membership_for(user=user, team=statement.grant.team) if statement else None
    if membership is None:
        raise Http404("No such statement.")
    if membership.can_manage_members:
        return statement
    if statement.kind == StatementKind.GRANT:
        raise PermissionDenied("Only the team's managers can read the grant's statement.")
    if statement.user_id != user.pk:
        raise Http404("No such statement.")
    return statement
