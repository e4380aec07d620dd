from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from apps.usage.periods import period_for

WARSAW = zoneinfo.ZoneInfo("Europe/Warsaw")


def test_it_splits_months_at_midnight_in_warsaw(settings):
    settings.TIME_ZONE = "Europe/Warsaw"
    assert period_for(dt.datetime(2025, 1, 31, 23, 59, 59, tzinfo=WARSAW)) == "2025-01"
    assert period_for(dt.datetime(2025, 2, 1, 0, 0, 0, tzinfo=WARSAW)) == "2025-02"


def test_it_uses_warsaw_time_for_instants_given_in_utc(settings):
    settings.TIME_ZONE = "Europe/Warsaw"
    # 23:30 UTC on 31 March is already 01:30 on 1 April in Warsaw (summer time).
    assert period_for(dt.datetime(2025, 3, 31, 23, 30, tzinfo=dt.UTC)) == "2025-04"
    assert period_for(dt.datetime(2025, 12, 31, 22, 59, 59, tzinfo=dt.UTC)) == "2025-12"
    assert period_for(dt.datetime(2025, 12, 31, 23, 0, 0, tzinfo=dt.UTC)) == "2026-01"


def test_it_follows_the_configured_time_zone(settings):
    settings.TIME_ZONE = "UTC"
    assert period_for(dt.datetime(2025, 3, 31, 23, 30, tzinfo=dt.UTC)) == "2025-03"


def test_it_refuses_naive_datetimes():
    with pytest.raises(ValueError):
        period_for(dt.datetime(2025, 1, 1))


def test_it_answers_every_instant_around_the_boundaries_it_remembers(settings):
    # period_for remembers the month it answered last: the instants just inside and just
    # outside that month, in either order and across years, must still get their own month.
    settings.TIME_ZONE = "Europe/Warsaw"
    tick = dt.timedelta(microseconds=1)
    december = dt.datetime(2025, 12, 15, 12, tzinfo=WARSAW)
    new_year = dt.datetime(2026, 1, 1, tzinfo=WARSAW)
    first_of_december = dt.datetime(2025, 12, 1, tzinfo=WARSAW)
    for moment, expected in [
        (december, "2025-12"),
        (new_year - tick, "2025-12"),
        (new_year, "2026-01"),
        (new_year - tick, "2025-12"),
        (first_of_december, "2025-12"),
        (first_of_december - tick, "2025-11"),
        (december, "2025-12"),
    ]:
        assert period_for(moment) == expected, moment
    assert period_for(new_year) == "2026-01"  # remembered: January in Warsaw
    settings.TIME_ZONE = "UTC"  # a changed zone is not answered from the remembered month
    assert period_for(dt.datetime(2025, 12, 31, 23, 30, tzinfo=dt.UTC)) == "2025-12"
    settings.TIME_ZONE = "Europe/Warsaw"
    assert period_for(dt.datetime(2025, 12, 31, 23, 30, tzinfo=dt.UTC)) == "2026-01"
