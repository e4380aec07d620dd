from __future__ import annotations

from django.db.models import Q, QuerySet

from apps.statements.models import Statement, StatementKind
from apps.teams.models import Membership, Role


def statements_visible(*, user, grant=None) -> QuerySet[Statement]:
    """Statements ``user`` may read: every statement of the grants whose team they manage, and
    their own member and key statements in the other grants of their teams."""
    teams = Membership.objects.filter(user=user)
    managed = teams.filter(role=Role.MANAGER).values("team_id")
    joined = teams.values("team_id")
    own = Q(user=user, kind__in=[StatementKind.MEMBER, StatementKind.KEY])
    rows = Statement.objects.filter(
        Q(grant__team_id__in=managed) | (Q(grant__team_id__in=joined) & own)
    )
    if grant is not None:
        rows = rows.filter(grant=grant)
    return rows.select_related("grant", "user", "api_key").order_by(
        "-period", "grant__identifier", "kind", "user__username", "api_key__name"
    )


def statement_lines(*, statement: Statement):
    return list(statement.lines.order_by("model_name"))
