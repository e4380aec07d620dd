"""Accounting periods: calendar months in ``settings.TIME_ZONE``, written "YYYY-MM"."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.utils import timezone

# The month last asked for: (time zone name, its first instant, the next month's, "YYYY-MM").
# Every request asks for the current month twice (hold, settlement); a comparison of two
# instants answers instead of a time-zone conversion.
_last_month: tuple[str, dt.datetime, dt.datetime, str] | None = None


def period_for(moment: dt.datetime | None = None) -> str:
    """The month ``moment`` (default: now) falls in, in the configured time zone.

    Naive datetimes are refused: a month boundary is only defined for an instant.
    """
    global _last_month
    moment = timezone.now() if moment is None else moment
    if timezone.is_naive(moment):
        raise ValueError("period_for needs an aware datetime")
    name = settings.TIME_ZONE
    last = _last_month
    if last is not None and last[0] == name and last[1] <= moment < last[2]:
        return last[3]
    zone = zoneinfo.ZoneInfo(name)
    local = moment.astimezone(zone)
    period = f"{local.year:04d}-{local.month:02d}"
    start = dt.datetime(local.year, local.month, 1, tzinfo=zone)
    following = dt.datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=zone)
    _last_month = (name, start, following, period)
    return period
