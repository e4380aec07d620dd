"""Reads of the accounting: where a key, its member and its grant stand against their limits."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection

from apps.core.exceptions import NotFound
from apps.grants.selectors import grants_for_user
from apps.limits.models import MemberLimit
from apps.usage.credits import as_credits
from apps.usage.exceptions import Limit
from apps.usage.models import LedgerEntry, MemberMonthCounter
from apps.usage.periods import period_for

ZERO = Decimal(0)
NOT_FOUND_MESSAGE = "This API key does not belong to this grant."

# The four budgets of a key and its member in a period: (limit, used, held) of each, in the
# order of ``Limit``. A month without a counter row yet has nothing used or held.
STATUS = """
SELECT g.credits_allocated, g.credits_used, g.credits_held,
       k.total_limit, k.credits_used, k.credits_held,
       k.monthly_limit, COALESCE(km.used, 0), COALESCE(km.held, 0),
       ml.monthly_limit, COALESCE(mm.used, 0), COALESCE(mm.held, 0)
FROM keys_apikey k
JOIN grants_grant g ON g.id = k.grant_id
LEFT JOIN usage_keymonthcounter km ON km.api_key_id = k.id AND km.period = %(period)s
LEFT JOIN usage_memberlimit ml ON ml.grant_id = g.id AND ml.user_id = %(user)s
LEFT JOIN usage_membermonthcounter mm
       ON mm.grant_id = g.id AND mm.user_id = %(user)s AND mm.period = %(period)s
WHERE k.id = %(key)s AND k.grant_id = %(grant)s"""


@dataclass(frozen=True)
class Budget:
    """One of the four budgets: ``limit`` None means unlimited, and then ``left`` is None."""

    name: Limit
    used: Decimal
    held: Decimal
    limit: Decimal | None

    @property
    def left(self) -> Decimal | None:
        if self.limit is None:
            return None
        return max(self.limit - self.used - self.held, ZERO)


@dataclass(frozen=True)
class BudgetStatus:
    period: str
    grant: Budget
    key_total: Budget
    key_monthly: Budget
    member_monthly: Budget

    @property
    def budgets(self) -> tuple[Budget, ...]:
        return (self.grant, self.key_total, self.key_monthly, self.member_monthly)

    @property
    def binding(self) -> Budget:
        """The budget with the least left; on a tie the first in ``Limit``'s order. The grant
        is always limited, so there always is one."""
        limited = [budget for budget in self.budgets if budget.left is not None]
        return min(limited, key=lambda budget: budget.left)

    @property
    def remaining(self) -> Decimal:
        return self.binding.left

    @property
    def limited_by(self) -> Limit:
        return self.binding.name

    def budget(self, name: str) -> Budget:
        return next(budget for budget in self.budgets if budget.name == name)

    def moved(self, *, held: Decimal, used: Decimal) -> BudgetStatus:
        """These budgets with ``held`` and ``used`` added to each (a hold settled or placed)."""
        moved = (
            Budget(b.name, used=b.used + used, held=b.held + held, limit=b.limit)
            for b in self.budgets
        )
        return BudgetStatus(self.period, *moved)


def budget_status(
    *, api_key_id: int, grant_id: int, user_id: int, period: str | None = None
) -> BudgetStatus:
    """All four budgets of a request by this key and member in one query (default: this
    month). Raises NotFound when the key does not belong to the grant."""
    period = period or period_for()
    params = {"key": api_key_id, "grant": grant_id, "user": user_id, "period": period}
    with connection.cursor() as cursor:
        cursor.execute(STATUS, params)
        row = cursor.fetchone()
    if row is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    return status_from_row(period, row)


def status_from_row(period: str, row: tuple) -> BudgetStatus:
    """The four budgets from (limit, used, held) of each, in the order of ``Limit``."""
    values = [as_credits(value) for value in row]  # (limit, used, held) per budget
    budgets = [
        Budget(name, used=values[3 * n + 1], held=values[3 * n + 2], limit=values[3 * n])
        for n, name in enumerate(Limit)
    ]
    return BudgetStatus(period, *budgets)


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


def key_request_find(*, api_key_id: int, request_id: str) -> LedgerEntry | None:
    """The ledger row of the key's request answered with that X-Request-ID (a client may send
    one id twice: the latest), or None."""
    request_id = request_id.strip()
    if not request_id or len(request_id) > 128:
        return None
    rows = LedgerEntry.objects.filter(api_key_id=api_key_id, request_id=request_id)
    return rows.select_related("model").order_by("-created", "-id").first()
