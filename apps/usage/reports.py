"""Consumption reports: a grant's, a key's and a member's usage over time, by model and by member.

Every figure is the sum of the hourly ``UsageBucket`` rows plus the ledger rows not rolled up
yet (the tail, found through a partial index, so it stays cheap), so reports are always
current and never scan the ledger. Both halves are read in one ``UNION ALL`` statement, which
sees one snapshot of the database: a rollup committing meanwhile can neither hide a row nor
count it twice.

Time: buckets start on UTC hours. Daily figures are calendar days in ``settings.TIME_ZONE``
(whose offsets are whole hours, so each UTC hour lies in one local day, across DST changes too).
Monthly figures are accounting periods ("YYYY-MM", the month a request's credits were charged
to — the counters' and the limits' month).

Every selector takes its scope (grant, key or user) as a required keyword. Who may see what is
the caller's rule (``apps.teams.access``): members see only their own rows.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate

from apps.catalog.models import CatalogModel
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.limits.models import MemberLimit
from apps.teams.models import Membership
from apps.usage.credits import CREDIT_QUANTUM
from apps.usage.models import LedgerEntry, UsageBucket

ZERO = Decimal(0)
Granularity = Literal["day", "month"]


@dataclass
class Point:
    """One day (``period`` a date) or one month (``period`` "YYYY-MM") of a series."""

    period: dt.date | str
    credits: Decimal = ZERO
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Row:
    """One line of a breakdown; ``subject`` is what it is about (a CatalogModel, an ApiKey)."""

    label: str
    credits: Decimal = ZERO
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    subject: object = None


@dataclass
class MemberRow:
    user: object
    month_credits: Decimal
    total_credits: Decimal
    monthly_limit: Decimal | None  # None: no limit


@dataclass
class _Sums:
    credits: Decimal = ZERO
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    month_credits: Decimal = ZERO


def zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def day_start(day: dt.date) -> dt.datetime:
    """Local midnight of ``day`` as an aware datetime."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=zone())


def _aggregates(*, tail: bool, month: str | None) -> dict:
    aggregates = {
        "c": Sum("credits"),
        "n": Count("id") if tail else Sum("requests"),
        "pt": Sum("prompt_tokens"),
        "ct": Sum("completion_tokens"),
    }
    if month is not None:
        aggregates["mc"] = Sum("credits", filter=Q(period=month))
    return aggregates


def _half(model, *, where: Q, key: str, month: str | None, since, until):
    tail = model is LedgerEntry
    moment = "created" if tail else "hour"
    rows = model.objects.filter(where, rolled_up=False) if tail else model.objects.filter(where)
    if since is not None:
        rows = rows.filter(**{f"{moment}__gte": since})
    if until is not None:
        rows = rows.filter(**{f"{moment}__lt": until})
    group = TruncDate(moment, tzinfo=zone()) if key == "day" else F(key)
    return (
        rows.order_by()
        .annotate(k=group)
        .values("k")
        .annotate(**_aggregates(tail=tail, month=month))
    )


def _credits(value) -> Decimal:
    """A credit sum at the columns' 6 places (exact on PostgreSQL; SQLite sums REALs)."""
    return ZERO if value is None else Decimal(str(value)).quantize(CREDIT_QUANTUM)


def _grouped(
    *, where: Q, key: str, month: str | None = None, since=None, until=None
) -> dict[object, _Sums]:
    """Sums of buckets plus the unrolled tail per ``key`` ("day" or a column), in one query."""
    options = {"where": where, "key": key, "month": month, "since": since, "until": until}
    query = _half(UsageBucket, **options).union(_half(LedgerEntry, **options), all=True)
    sums: dict[object, _Sums] = defaultdict(_Sums)
    for row in query:
        total = sums[row["k"]]
        total.credits += _credits(row["c"])
        total.requests += int(row["n"] or 0)
        total.prompt_tokens += int(row["pt"] or 0)
        total.completion_tokens += int(row["ct"] or 0)
        if month is not None:
            total.month_credits += _credits(row["mc"])
    return sums


# Series


def _period_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _next_period(period: str) -> str:
    year, month = int(period[:4]), int(period[5:])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def _span(first, last, step):
    while first <= last:
        yield first
        first = step(first)


def _series(where: Q, granularity: Granularity, start, end) -> list[Point]:
    """Points from ``start`` to ``end`` (local dates, inclusive; default: the first and last
    with usage), days without usage included as zeros."""
    if granularity == "day":
        since = day_start(start) if start else None
        until = day_start(end + dt.timedelta(days=1)) if end else None
        sums = _grouped(where=where, key="day", since=since, until=until)
        step = lambda day: day + dt.timedelta(days=1)  # noqa: E731
    elif granularity == "month":
        period_range = Q()
        if start:
            period_range &= Q(period__gte=_period_of(start))
        if end:
            period_range &= Q(period__lte=_period_of(end))
        sums = _grouped(where=where & period_range, key="period")
        start, end = start and _period_of(start), end and _period_of(end)
        step = _next_period
    else:
        raise ValueError(f"granularity must be 'day' or 'month', not {granularity!r}")
    if not sums and not (start and end):
        return []
    first, last = start or min(sums), end or max(sums)
    return [Point(period, **_point_sums(sums.get(period))) for period in _span(first, last, step)]


def _point_sums(total: _Sums | None) -> dict:
    if total is None:
        return {}
    return {
        "credits": total.credits,
        "requests": total.requests,
        "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
    }


def grant_usage_series(
    *, grant: Grant, granularity: Granularity, start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[Point]:  # fmt: skip
    """A grant's consumption per local day or per month, oldest first."""
    return _series(Q(grant_id=grant.pk), granularity, start, end)


def key_usage_series(
    *, key: ApiKey, granularity: Granularity, start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[Point]:  # fmt: skip
    """A key's consumption per local day or per month, oldest first."""
    return _series(Q(api_key_id=key.pk), granularity, start, end)


# Breakdowns


def _by_model(where: Q, period: str | None) -> list[Row]:
    if period is not None:
        where &= Q(period=period)
    sums = _grouped(where=where, key="model_id")
    models = CatalogModel.objects.in_bulk(list(sums))
    rows = [Row(models[pk].name, **_point_sums(total), subject=models[pk])
            for pk, total in sums.items()]  # fmt: skip
    return sorted(rows, key=lambda row: (-row.credits, row.label))


def grant_usage_by_model(*, grant: Grant, period: str | None = None) -> list[Row]:
    """A grant's consumption per model, in a period or (None) ever; the largest first."""
    return _by_model(Q(grant_id=grant.pk), period)


def key_usage_by_model(*, key: ApiKey, period: str | None = None) -> list[Row]:
    """A key's consumption per model, in a period or (None) ever; the largest first."""
    return _by_model(Q(api_key_id=key.pk), period)


def grant_usage_by_member(*, grant: Grant, period: str, user=None) -> list[MemberRow]:
    """Each member's consumption in the grant in ``period`` and ever, with their monthly limit:
    the team's members and anyone else who spent from the grant, by username. With ``user``,
    only that person's row (a member sees only their own)."""
    where = Q(grant_id=grant.pk) if user is None else Q(grant_id=grant.pk, user_id=user.pk)
    sums = _grouped(where=where, key="user_id", month=period)
    members = Membership.objects.filter(team_id=grant.team_id)
    if user is not None:
        members = members.filter(user_id=user.pk)
    user_ids = set(sums) | set(members.values_list("user_id", flat=True))
    users = get_user_model().objects.in_bulk(user_ids)
    limits = dict(
        MemberLimit.objects.filter(grant_id=grant.pk, user_id__in=user_ids).values_list(
            "user_id", "monthly_limit"
        )
    )
    rows = [
        MemberRow(
            user=users[pk],
            month_credits=sums[pk].month_credits if pk in sums else ZERO,
            total_credits=sums[pk].credits if pk in sums else ZERO,
            monthly_limit=limits.get(pk),
        )
        for pk in user_ids
    ]
    return sorted(rows, key=lambda row: row.user.username.lower())


def user_usage_month(*, user, period: str) -> list[Row]:
    """What ``user`` spent in ``period`` across all grants and keys: one row per key, labelled
    "grant / key", by label."""
    sums = _grouped(where=Q(user_id=user.pk, period=period), key="api_key_id")
    keys = ApiKey.objects.select_related("grant").in_bulk(list(sums))
    labels = {pk: f"{key.grant.identifier} / {key.name}" for pk, key in keys.items()}
    rows = [Row(labels[pk], **_point_sums(total), subject=keys[pk]) for pk, total in sums.items()]
    return sorted(rows, key=lambda row: row.label)


def grant_usage_totals(*, grant: Grant) -> dict[str, Decimal]:
    """The grant's pool, read fresh: allocated, used, held (by requests in flight), left."""
    allocated, used, held = Grant.objects.filter(pk=grant.pk).values_list(
        "credits_allocated", "credits_used", "credits_held"
    )[0]
    return {
        "allocated": allocated,
        "used": used,
        "held": held,
        "left": max(allocated - used - held, ZERO),
    }
