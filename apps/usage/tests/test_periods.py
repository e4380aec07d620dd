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
