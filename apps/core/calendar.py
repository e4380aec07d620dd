"""Today's date in the service's time zone (``settings.TIME_ZONE``), for checks made on every
request (an API key works only while its grant is valid today).

The day last asked for is remembered with its first instant and the next day's, in UTC, so a
call within that day compares two instants instead of converting time zones.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.utils import timezone

# (time zone name, the day's first instant in UTC, the next day's, the day)
_last_day: tuple[str, dt.datetime, dt.datetime, dt.date] | None = None


def local_today(moment: dt.datetime | None = None) -> dt.date:
    """The date ``moment`` (default: now, aware) falls on in the configured time zone: as
    ``timezone.localdate(moment)``."""
    global _last_day
    moment = timezone.now() if moment is None else moment
    name = settings.TIME_ZONE
    last = _last_day
    if last is not None and last[0] == name and last[1] <= moment < last[2]:
        return last[3]
    zone = zoneinfo.ZoneInfo(name)
    day = moment.astimezone(zone).date()
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    following = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    _last_day = (name, start, following.astimezone(dt.UTC), day)
    return day
