"""Accounting periods: calendar months in ``settings.TIME_ZONE``, written "YYYY-MM"."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.utils import timezone


def period_for(moment: dt.datetime | None = None) -> str:
    """The month ``moment`` (default: now) falls in, in the configured time zone.

    Naive datetimes are refused: a month boundary is only defined for an instant.
    """
    moment = timezone.now() if moment is None else moment
    if timezone.is_naive(moment):
        raise ValueError("period_for needs an aware datetime")
    local = moment.astimezone(zoneinfo.ZoneInfo(settings.TIME_ZONE))
    return f"{local.year:04d}-{local.month:02d}"
