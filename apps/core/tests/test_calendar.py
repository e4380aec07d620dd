"""``local_today`` gives the day Django's ``timezone.localdate`` gives, also across midnight,
a daylight-saving change and a change of TIME_ZONE (it remembers the last day asked for)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.core.calendar import local_today


def _instants():
    """Every 20 minutes over two days around Europe/Warsaw's spring-forward night, in UTC."""
    start = dt.datetime(2026, 3, 28, 20, 0, tzinfo=dt.UTC)
    return [start + dt.timedelta(minutes=20 * i) for i in range(2 * 72)]


@pytest.mark.parametrize("zone", ["Europe/Warsaw", "Pacific/Kiritimati", "America/St_Johns"])
def test_it_gives_the_same_day_as_django(settings, zone):
    settings.TIME_ZONE = zone
    for moment in _instants():
        assert local_today(moment) == timezone.localdate(moment), moment


def test_it_follows_a_change_of_time_zone(settings):
    moment = dt.datetime(2026, 12, 3, 23, 30, tzinfo=dt.UTC)
    settings.TIME_ZONE = "UTC"
    assert local_today(moment) == dt.date(2026, 12, 3)
    settings.TIME_ZONE = "Europe/Warsaw"
    assert local_today(moment) == dt.date(2026, 12, 4)


def test_without_a_moment_it_is_today(settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    assert local_today() == timezone.localdate()
