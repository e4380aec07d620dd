"""The tables of the consumption pages, built from the selectors' rows. Each table is shown
as HTML, drawn as a chart (when it has one) and downloaded as CSV from the same cells."""

from __future__ import annotations

from apps.core.tables import Chart, Column, Table, cell_text
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
        chart_empty_message=f"No credits used in {period} yet.",
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


USAGE_COLUMNS = [
    Column("Requests", numeric=True),
    Column("Prompt tokens", numeric=True),
    Column("Completion tokens", numeric=True),
    CREDITS,
]


def series_table(
    *, points, name: str, title: str, granularity: str, axis=None, nothing: str = ""
) -> Table:
    """Consumption per day or per month; the chart draws the credits, along ``axis`` (every
    day of the month) when given; ``nothing``: what the page says when there is none."""
    table = Table(
        name=name,
        title=title,
        columns=[Column("Day" if granularity == "day" else "Month"), *USAGE_COLUMNS],
        chart=Chart(kind="line" if granularity == "day" else "bar", label_column=0,
                    value_columns=(4,)),
        empty_message="No consumption in this time.",
        chart_labels=[cell_text(label) for label in axis] if axis else None,
        chart_empty_message=nothing or "No requests in this time yet.",
    )  # fmt: skip
    for point in points:
        table.add(
            point.period, point.requests, point.prompt_tokens, point.completion_tokens,
            point.credits,
        )  # fmt: skip
    return table


def breakdown_table(*, rows, name: str, title: str, label: str, nothing: str = "") -> Table:
    """Consumption per model, or per key: a bar per row."""
    table = Table(
        name=name,
        title=title,
        columns=[Column(label), *USAGE_COLUMNS],
        chart=Chart(kind="bar", label_column=0, value_columns=(4,)),
        empty_message="No consumption in this time.",
        chart_empty_message=nothing or "No requests in this time yet.",
    )
    for row in rows:
        table.add(
            row.label, row.requests, row.prompt_tokens, row.completion_tokens, row.credits,
            row_id=row.label,
        )  # fmt: skip
    return table


def members_table(*, rows, roles: dict, period: str, change_url=None) -> Table:
    """The Members table: this month's and cumulative consumption and the monthly limit; with
    ``change_url`` (the grant admin's view) a Change limit link per member."""
    table = Table(
        name="members",
        title=f"Members: consumption in {period} and since the grant began",
        columns=[
            Column("Member"),
            Column("Role"),
            Column(f"Credits in {period}", numeric=True),
            Column("Credits since the grant began", numeric=True),
            Column("Monthly limit", numeric=True, empty="no limit"),
        ],
        chart=Chart(kind="bar", label_column=0, value_columns=(2, 3)),
        chart_empty_message=f"No credits used in {period} yet.",
        actions_title="Limit" if change_url else "",
    )
    for row in rows:
        username = row.user.get_username()
        actions = []
        if change_url:
            link = {"text": "Change limit", "url": change_url(row.user)}
            actions = [link | {"testid": f"change-limit-{username}"}]
        table.add(
            username, roles.get(row.user.pk, "former member"), row.month_credits,
            row.total_credits, row.monthly_limit, row_id=username, actions=actions,
        )  # fmt: skip
    return table


def limit_changes_table(*, changes) -> Table:
    table = Table(
        name="limit-changes",
        title="History: who set which limit when",
        columns=[
            Column("When"),
            Column("Member"),
            Column("Before", numeric=True, empty="no limit"),
            Column("After", numeric=True, empty="no limit"),
            Column("Set"),
            Column("By"),
        ],
        empty_message="No monthly limit was set yet.",
    )
    for change in changes:
        by = change.changed_by.get_username() if change.changed_by else "system"
        table.add(
            change.created, change.user.get_username(), change.before, change.after,
            change.get_scope_display(), by,
        )  # fmt: skip
    return table
