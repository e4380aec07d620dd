"""The tables of the consumption pages, built from the selectors' rows. Each table is shown
as HTML, drawn as a chart (when it has one) and downloaded as CSV from the same cells."""

from __future__ import annotations

from apps.consumption.tables import Chart, Column, Table
from apps.usage.exceptions import Limit
from apps.usage.selectors import BudgetStatus

CREDITS = Column("Credits", numeric=True)


def member_budgets_table(*, budgets, period: str) -> Table:
    table = Table(
        name="limits",
        title=f"Your monthly limits in {period}",
        columns=[
            Column("Grant"),
            Column("Used", numeric=True),
            Column("Held by requests in flight", numeric=True),
            Column("Monthly limit", numeric=True, empty="no limit"),
            Column("Left", numeric=True, empty="no limit"),
        ],
        chart=Chart(kind="bar", label_column=0, value_columns=(1,)),
        empty_message="You are not in a team with a grant yet.",
    )
    for budget in budgets:
        table.add(
            budget.grant.identifier,
            budget.used,
            budget.held,
            budget.limit,
            budget.left,
            row_id=budget.grant.identifier,
        )
    return table


BUDGET_LABELS = {
    Limit.GRANT: "Grant credits",
    Limit.KEY_TOTAL: "Key total limit",
    Limit.KEY_MONTHLY: "Key monthly limit",
    Limit.MEMBER_MONTHLY: "Member monthly limit (all of the owner's keys in the grant)",
}


def key_limits_table(*, status: BudgetStatus) -> Table:
    """The four limits a request by this key must fit in, and what is left under each."""
    table = Table(
        name="limits",
        title=f"Limits and what is left ({status.period})",
        columns=[
            Column("Limit"),
            Column("Set to", numeric=True, empty="no limit"),
            Column("Used", numeric=True),
            Column("Held by requests in flight", numeric=True),
            Column("Left", numeric=True, empty="no limit"),
        ],
    )
    for budget in status.budgets:
        table.add(
            BUDGET_LABELS[budget.name],
            budget.limit,
            budget.used,
            budget.held,
            budget.left,
            row_id=budget.name,
        )
    return table
