"""Reads of the accounting: where a key, its member and its grant stand against their limits."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F, OuterRef, Subquery

from apps.core.exceptions import NotFound
from apps.keys.models import ApiKey
from apps.usage.exceptions import Limit
from apps.usage.models import KeyMonthCounter, MemberLimit, MemberMonthCounter
from apps.usage.periods import period_for

ZERO = Decimal(0)


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


def _month_value(model, field: str, period: str, **owner) -> Subquery:
    return Subquery(model.objects.filter(period=period, **owner).values(field)[:1])


def budget_status(
    *, api_key_id: int, grant_id: int, user_id: int, period: str | None = None
) -> BudgetStatus:
    """All four budgets of a request by this key and member in one query (default: this
    month). Raises NotFound when the key does not belong to the grant."""
    period = period or period_for()
    member = {"grant_id": grant_id, "user_id": user_id}
    month = {
        "km_used": _month_value(KeyMonthCounter, "used", period, api_key=OuterRef("pk")),
        "km_held": _month_value(KeyMonthCounter, "held", period, api_key=OuterRef("pk")),
        "mm_used": _month_value(MemberMonthCounter, "used", period, **member),
        "mm_held": _month_value(MemberMonthCounter, "held", period, **member),
        "mm_limit": Subquery(MemberLimit.objects.filter(**member).values("monthly_limit")[:1]),
    }
    pool = {
        "g_limit": F("grant__credits_allocated"),
        "g_used": F("grant__credits_used"),
        "g_held": F("grant__credits_held"),
    }
    rows = (
        ApiKey.objects.filter(pk=api_key_id, grant_id=grant_id)
        .order_by()
        .annotate(**pool, **month)
        .values(*pool, *month, "total_limit", "monthly_limit", "credits_used", "credits_held")
    )
    row = next(iter(rows), None)
    if row is None:
        raise NotFound("This API key does not belong to this grant.")
    return BudgetStatus(
        period=period,
        grant=Budget(Limit.GRANT, row["g_used"], row["g_held"], row["g_limit"]),
        key_total=Budget(
            Limit.KEY_TOTAL, row["credits_used"], row["credits_held"], row["total_limit"]
        ),
        key_monthly=Budget(
            Limit.KEY_MONTHLY, row["km_used"] or ZERO, row["km_held"] or ZERO, row["monthly_limit"]
        ),
        member_monthly=Budget(
            Limit.MEMBER_MONTHLY, row["mm_used"] or ZERO, row["mm_held"] or ZERO, row["mm_limit"]
        ),
    )
