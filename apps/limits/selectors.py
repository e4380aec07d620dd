"""Reads of members' limits and their history. A plain member's view is narrowed to their own
rows by passing ``user``."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet

from apps.grants.selectors import grants_for_user
from apps.limits.models import MemberLimitChange
from apps.usage.models import MemberLimit, MemberMonthCounter

HISTORY_SIZE = 200
ZERO = Decimal(0)


def member_limit_current(*, grant, user) -> Decimal | None:
    """The member's monthly limit in the grant now (None: no limit)."""
    row = MemberLimit.objects.filter(grant=grant, user=user).first()
    return row.monthly_limit if row else None


def member_limit_changes(*, grant, user=None) -> QuerySet[MemberLimitChange]:
    """The newest changes in the grant; only ``user``'s own when given."""
    changes = MemberLimitChange.objects.filter(grant=grant)
    if user is not None:
        changes = changes.filter(user=user)
    return changes.select_related("user", "changed_by")[:HISTORY_SIZE]


@dataclass(frozen=True)
class MemberBudget:
    grant: object
    used: Decimal
    held: Decimal
    limit: Decimal | None

    @property
    def left(self) -> Decimal | None:
        return None if self.limit is None else max(self.limit - self.used - self.held, ZERO)


def member_budgets_for_user(*, user, period: str) -> list[MemberBudget]:
    """For each grant of the user's teams: what the user used and holds in ``period`` and
    their monthly limit there (None: no limit)."""
    grants = list(grants_for_user(user=user))
    limits = dict(
        MemberLimit.objects.filter(user=user, grant__in=grants).values_list(
            "grant_id", "monthly_limit"
        )
    )
    counters = {
        row["grant_id"]: row
        for row in MemberMonthCounter.objects.filter(
            user=user, grant__in=grants, period=period
        ).values("grant_id", "used", "held")
    }
    return [
        MemberBudget(
            grant=grant,
            used=counters.get(grant.pk, {}).get("used", ZERO),
            held=counters.get(grant.pk, {}).get("held", ZERO),
            limit=limits.get(grant.pk),
        )
        for grant in grants
    ]
