"""Closing a month: one immutable statement per grant, per member and per key.

``statement_close_grant`` sums the ledger rows of one grant and accounting period (the month
the counters were charged, ``LedgerEntry.period``, so a statement always agrees with the
monthly limits) by member, key and model, and writes the grant's statement, its members' and
its keys' with their per-model lines in one transaction.

Claiming: the grant's statement is inserted first, and a unique constraint allows one per
grant and period. Of two runs closing the same month at once the second waits on that insert
and then fails it, so its whole transaction is rolled back: a month is closed exactly once.
A month is only closed when it has ended and none of the grant's requests of that month is
still in flight (a hold of that period exists); such a grant is left for the next run.
"""

from __future__ import annotations

import calendar
import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from apps.catalog.models import CatalogModel
from apps.core.exceptions import ApplicationError, Conflict
from apps.grants.models import Grant
from apps.statements.models import Statement, StatementKind, StatementLine
from apps.usage.credits import CREDIT_QUANTUM
from apps.usage.models import Hold, LedgerEntry, MemberMonthCounter, validate_period
from apps.usage.periods import period_for


class StatementClosed(Conflict):
    """The month is closed already; a closed statement is never rewritten."""


class PeriodStillOpen(Conflict):
    """Requests of the month are still in flight; close it when they are settled."""


@dataclass
class _Tally:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    credits: Decimal = Decimal(0)
    capped: int = 0
    by_model: dict[int, _Tally] = field(default_factory=dict)

    def add(self, row: dict, *, per_model: bool = True) -> None:
        self.requests += row["requests"]
        self.prompt_tokens += row["prompt_tokens"]
        self.completion_tokens += row["completion_tokens"]
        self.credits += row["credits"]
        self.capped += row["capped"]
        if per_model:
            self.by_model.setdefault(row["model_id"], _Tally()).add(row, per_model=False)

    def totals(self) -> dict:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "credits": self.credits.quantize(CREDIT_QUANTUM),  # SQLite sums REALs
            "capped": self.capped,
        }


def period_previous(*, now: dt.datetime | None = None) -> str:
    """The month before the one ``now`` falls in, in the service's time zone."""
    local = (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(settings.TIME_ZONE))
    last_month = local.date().replace(day=1) - dt.timedelta(days=1)
    return f"{last_month.year:04d}-{last_month.month:02d}"


def period_days(period: str) -> tuple[dt.date, dt.date]:
    year, month = int(period[:4]), int(period[5:])
    return dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1])


def _check_closable(period: str, now: dt.datetime) -> None:
    try:
        validate_period(period)
    except ValidationError:
        raise ApplicationError("A period is written YYYY-MM.", param="period") from None
    if period >= period_for(now):
        raise ApplicationError(f"{period} has not ended yet; only past months close.")


def _tallies(grant: Grant, period: str) -> tuple[_Tally, dict, dict]:
    rows = (
        LedgerEntry.objects.filter(grant=grant, period=period)
        .values("user_id", "api_key_id", "model_id")
        .annotate(
            requests=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            credits=Sum("credits"),
            capped=Count("id", filter=Q(capped=True)),
        )
        .order_by()
    )
    whole, members, keys = _Tally(), defaultdict(_Tally), defaultdict(_Tally)
    for row in rows:
        whole.add(row)
        members[row["user_id"]].add(row)
        keys[(row["api_key_id"], row["user_id"])].add(row)
    return whole, members, keys


def _lines(statements: list[tuple[Statement, _Tally]]) -> list[StatementLine]:
    model_ids = {m for _, tally in statements for m in tally.by_model}
    names = dict(CatalogModel.objects.filter(pk__in=model_ids).values_list("pk", "name"))
    return [
        StatementLine(statement=statement, model_id=model, model_name=names[model], **t.totals())
        for statement, tally in statements
        for model, t in sorted(tally.by_model.items())
    ]


def statement_close_grant(
    *, grant: Grant, period: str, now: dt.datetime | None = None
) -> Statement:
    """Close ``period`` for one grant: write its statements and return the grant's. Raises
    StatementClosed when the month is closed already, PeriodStillOpen while requests of the
    month are in flight, ApplicationError for a month that has not ended."""
    now = now or timezone.now()
    _check_closable(period, now)
    with transaction.atomic():
        if Hold.objects.filter(grant=grant, period=period).exists():
            raise PeriodStillOpen(f"Requests of {grant} in {period} are still in flight.")
        whole, members, keys = _tallies(grant, period)
        common = {"grant": grant, "period": period, "closed_at": now}
        try:
            head = Statement.objects.create(kind=StatementKind.GRANT, **common, **whole.totals())
        except IntegrityError:
            raise StatementClosed(f"{period} of {grant} is closed already.") from None
        owned = _owned_statements(common, members, keys)
        Statement.objects.bulk_create([statement for statement, _ in owned])
        StatementLine.objects.bulk_create(_lines([(head, whole), *owned]))
    return head


def _owned_statements(common: dict, members: dict, keys: dict) -> list[tuple[Statement, _Tally]]:
    """The members' and the keys' statements, not saved yet, each with its tally."""
    owned = [
        (Statement(kind=StatementKind.MEMBER, user_id=user_id, **common, **t.totals()), t)
        for user_id, t in sorted(members.items())
    ]
    for (key_id, user_id), t in sorted(keys.items()):
        owner = {"api_key_id": key_id, "user_id": user_id}
        owned.append((Statement(kind=StatementKind.KEY, **owner, **common, **t.totals()), t))
    return owned


@dataclass
class CloseReport:
    period: str
    closed: list[str] = field(default_factory=list)  # grant identifiers
    still_open: list[str] = field(default_factory=list)


def statements_close(*, period: str | None = None, now: dt.datetime | None = None) -> CloseReport:
    """Close ``period`` (default: last month) for every grant that was valid in it or spent
    in it and is not closed yet. Idempotent: a second run finds nothing left to close."""
    now = now or timezone.now()
    period = period or period_previous(now=now)
    _check_closable(period, now)
    first, last = period_days(period)
    spent = MemberMonthCounter.objects.filter(period=period).values("grant_id")
    closed = Statement.objects.filter(grant=OuterRef("pk"), kind=StatementKind.GRANT, period=period)
    grants = Grant.objects.filter(
        Q(valid_from__lte=last, valid_until__gte=first) | Q(pk__in=spent), ~Exists(closed)
    )
    report = CloseReport(period=period)
    for grant in grants.order_by("pk"):
        try:
            statement_close_grant(grant=grant, period=period, now=now)
        except StatementClosed:
            continue  # closed by a concurrent run meanwhile
        except PeriodStillOpen:
            report.still_open.append(grant.identifier)
        else:
            report.closed.append(grant.identifier)
    return report
