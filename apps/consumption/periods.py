"""The month a consumption page shows: ``?period=YYYY-MM``, this month by default."""

from __future__ import annotations

import datetime as dt
import re

from django.core.exceptions import BadRequest
from django.http import Http404

from apps.usage.periods import period_for

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# Months a page can show: no credits were spent before 1970, and a month's bounds in any time
# zone must stay inside the calendar's years 1 to 9999.
FIRST, LAST = "1970-01", "9998-12"


def period_from(request) -> str:
    """The requested month; a malformed one is a 404 (no such page), one out of range a 400 that
    says which months exist; never a 500."""
    period = request.GET.get("period") or period_for()
    if not PERIOD.match(period):
        raise Http404("A period is written YYYY-MM.")
    if not FIRST <= period <= LAST:
        raise BadRequest(f"A period is a month from {FIRST} to {LAST}.")
    return period


def period_bounds(period: str) -> tuple[dt.date, dt.date]:
    """The first and the last day of the month."""
    year, month = (int(part) for part in period.split("-"))
    first = dt.date(year, month, 1)
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return first, following - dt.timedelta(days=1)


def periods_between(start: dt.date, end: dt.date) -> list[str]:
    """Every month from ``start``'s to ``end``'s, newest first (the period picker)."""
    periods, year, month = [], end.year, end.month
    while (year, month) >= (start.year, start.month):
        periods.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return periods
