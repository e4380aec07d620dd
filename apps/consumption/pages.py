"""What the consumption parts of the grant, key and My usage pages show: their tables (each
drawn as a chart where it has one and downloadable as CSV) and the figures around them.

Members see only their own rows: a grant's plain member gets their own line of the Members
table and their own limit changes; the grant's managers see everyone's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.urls import reverse
from django.utils import timezone

from apps.consumption.builders import (
    BUDGET_LABELS,
    breakdown_table,
    key_limits_table,
    limit_changes_table,
    member_budgets_table,
    members_table,
    series_table,
)
from apps.consumption.periods import period_bounds, periods_between
from apps.core.tables import Table
from apps.grants.selectors import grant_members
from apps.limits.selectors import member_limit_changes
from apps.usage.reports import (
    grant_usage_by_member,
    grant_usage_by_model,
    grant_usage_series,
    key_usage_by_model,
    key_usage_series,
    user_usage_month,
)
from apps.usage.selectors import budget_status, member_budgets_for_user


@dataclass
class Consumption:
    tables: list[Table] = field(default_factory=list)
    context: dict = field(default_factory=dict)


def _days_of(period: str) -> tuple[dt.date, dt.date]:
    """The period's days up to today (a future month: its first day only)."""
    first, last = period_bounds(period)
    return first, max(first, min(last, timezone.localdate()))


def _every_day(period: str) -> list[dt.date]:
    """Every day of the month: the daily chart's axis, whatever part of it has figures."""
    first, last = period_bounds(period)
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _since(start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
    return start, max(start, min(end, timezone.localdate()))


def _usage_tables(*, selector_series, selector_by_model, scope: dict, period: str, begun):
    since, until = _since(*begun)
    first, last = _days_of(period)
    first = min(max(first, since), last)  # no days before the grant or key existed
    daily = selector_series(**scope, granularity="day", start=first, end=last)
    monthly = selector_series(**scope, granularity="month", start=since, end=until)
    month = _every_day(period)
    nothing = f"No requests in {period} yet."
    return [
        series_table(points=daily, name="daily", title=f"Daily consumption in {period}",
                     granularity="day", axis=month, nothing=nothing),
        series_table(points=monthly, name="monthly", title="Monthly consumption",
                     granularity="month", nothing="No requests yet."),
        breakdown_table(rows=selector_by_model(**scope, period=period), name="models",
                        title=f"Consumption by model in {period}", label="Model",
                        nothing=nothing),
    ]  # fmt: skip


def grant_consumption(*, grant, membership, period: str) -> Consumption:
    viewer = membership.user
    manages = membership.can_manage_members
    usage = _usage_tables(
        selector_series=grant_usage_series,
        selector_by_model=grant_usage_by_model,
        scope={"grant": grant},
        period=period,
        begun=(grant.valid_from, grant.valid_until),
    )
    roles = {m.user_id: m.get_role_display() for m in grant_members(grant=grant)}
    rows = grant_usage_by_member(grant=grant, period=period, user=None if manages else viewer)

    def change_url(user) -> str:
        return reverse("limits:member", args=[grant.public_id, user.public_id])

    members = members_table(
        rows=rows, roles=roles, period=period, change_url=change_url if manages else None
    )
    changes = limit_changes_table(
        changes=member_limit_changes(grant=grant, user=None if manages else viewer)
    )
    since, until = _since(grant.valid_from, grant.valid_until)
    context = {
        "period": period,
        "periods": periods_between(since, until),
        "members_table": members,
        "usage_tables": usage,
        "limit_changes_table": changes,
        "can_manage": manages,
    }
    return Consumption(tables=[members, *usage, changes], context=context)


def key_consumption(*, key, period: str) -> Consumption:
    """The key page: the four limits with what is left (this month), consumption over time
    and by model."""
    status = budget_status(api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id)
    limits = key_limits_table(status=status)
    created = timezone.localdate(key.created)
    usage = _usage_tables(
        selector_series=key_usage_series,
        selector_by_model=key_usage_by_model,
        scope={"key": key},
        period=period,
        begun=(created, timezone.localdate(key.expires_at)),
    )
    context = {
        "period": period,
        "periods": periods_between(*_since(created, timezone.localdate(key.expires_at))),
        "budget_status": status,
        "binding_label": BUDGET_LABELS[status.limited_by],
        "limits_table": limits,
        "usage_tables": usage,
    }
    return Consumption(tables=[limits, *usage], context=context)


def my_consumption(*, user, period: str) -> Consumption:
    """My usage: the person's consumption per grant and key, and their monthly limits."""
    rows = user_usage_month(user=user, period=period)
    keys = breakdown_table(
        rows=rows,
        name="keys",
        title=f"Your consumption in {period}",
        label="Grant / key",
        nothing=f"No requests in {period} yet.",
    )
    limits = member_budgets_table(
        budgets=member_budgets_for_user(user=user, period=period), period=period
    )
    joined = timezone.localdate(user.date_joined)
    context = {
        "period": period,
        "periods": periods_between(joined, max(joined, timezone.localdate())),
        "total_credits": sum((row.credits for row in rows), Decimal(0)),
    }
    return Consumption(tables=[keys, limits], context=context)
