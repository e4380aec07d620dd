"""What the consumption parts of the grant and key pages show: their tables (each drawn as a
chart where it has one and downloadable as CSV) and the figures around them."""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.consumption.builders import BUDGET_LABELS, key_limits_table
from apps.consumption.tables import Table
from apps.usage.selectors import BudgetStatus, budget_status


@dataclass
class Consumption:
    tables: list[Table] = field(default_factory=list)
    context: dict = field(default_factory=dict)

    def table(self, name: str) -> Table:
        return next(table for table in self.tables if table.name == name)


def key_consumption(*, key, period: str) -> Consumption:
    """The key page: the four limits with what is left (this month)."""
    status: BudgetStatus = budget_status(
        api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id
    )
    limits = key_limits_table(status=status)
    context = {
        "period": period,
        "budget_status": status,
        "binding_label": BUDGET_LABELS[status.limited_by],
        "limits_table": limits,
        "usage_tables": [],
    }
    return Consumption(tables=[limits], context=context)
