"""Days and months of the reports are Europe/Warsaw's, whether a row is rolled up or not."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.usage import reports
from apps.usage.models import UsageBucket
from apps.usage.rollup import ledger_rollup
from apps.usage.tests.ledger_rows import ledger_row, warsaw

pytestmark = pytest.mark.django_db
rolled = pytest.mark.parametrize("roll", [True, False], ids=["rolled", "tail"])


def days_and_months(world, key, moments, roll: bool, settings) -> tuple[list, list]:
    assert settings.TIME_ZONE == "Europe/Warsaw"
    for credits, moment in enumerate(moments, start=1):
        ledger_row(key, model=world.chat_model, created=moment, credits=str(credits))
    if roll:
        ledger_rollup()
    days = reports.grant_usage_series(grant=world.grant, granularity="day")
    months = reports.grant_usage_series(grant=world.grant, granularity="month")
    return (
        [(p.period, p.credits) for p in days if p.requests],
        [(p.period, p.credits) for p in months],
    )


@rolled
def test_the_last_second_of_october_and_the_first_of_november(world, key, roll, settings):
    days, months = days_and_months(
        world, key, [warsaw(2026, 10, 31, 23, 59, 59), warsaw(2026, 11, 1, 0, 0, 0)], roll,
        settings,
    )  # fmt: skip

    assert days == [(dt.date(2026, 10, 31), 1), (dt.date(2026, 11, 1), 2)]
    assert months == [("2026-10", 1), ("2026-11", 2)]


@rolled
def test_the_month_boundary_in_summer_time(world, key, roll, settings):
    # 23:59:59 CEST is 21:59:59 UTC; midnight is 22:00 UTC, still March 31st there.
    days, months = days_and_months(
        world, key, [warsaw(2026, 3, 31, 23, 59, 59), warsaw(2026, 4, 1, 0, 0, 0)], roll,
        settings,
    )  # fmt: skip

    assert days == [(dt.date(2026, 3, 31), 1), (dt.date(2026, 4, 1), 2)]
    assert months == [("2026-03", 1), ("2026-04", 2)]


@rolled
def test_the_25_hour_day_when_summer_time_ends(world, key, roll, settings):
    days, _ = days_and_months(
        world, key, [warsaw(2026, 10, 25, 0, 0, 0), warsaw(2026, 10, 25, 23, 59, 59),
                     warsaw(2026, 10, 26, 0, 0, 0)], roll, settings,
    )  # fmt: skip

    assert days == [(dt.date(2026, 10, 25), 3), (dt.date(2026, 10, 26), 3)]


@rolled
def test_the_23_hour_day_when_summer_time_starts(world, key, roll, settings):
    days, _ = days_and_months(
        world, key, [warsaw(2026, 3, 28, 23, 59, 59), warsaw(2026, 3, 29, 0, 0, 0),
                     warsaw(2026, 3, 29, 23, 59, 59)], roll, settings,
    )  # fmt: skip

    assert days == [(dt.date(2026, 3, 28), 1), (dt.date(2026, 3, 29), 5)]


def test_buckets_start_on_utc_hours(world, key):
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 1, 0, 0, 0))
    ledger_rollup()

    assert UsageBucket.objects.get().hour == dt.datetime(2026, 10, 31, 23, tzinfo=dt.UTC)


@rolled
def test_a_request_held_before_midnight_counts_in_its_charged_month(world, key, roll):
    """Held at 23:59:59 on October 31st, settled a second after midnight: its credits were
    charged to October's counters, so October's figures hold it; the day is the settlement's."""
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 1, 0, 0, 1),
               period="2026-10", credits="4")  # fmt: skip
    if roll:
        ledger_rollup()

    [day] = reports.grant_usage_series(grant=world.grant, granularity="day")
    [month] = reports.grant_usage_series(grant=world.grant, granularity="month")
    [member] = reports.grant_usage_by_member(grant=world.grant, period="2026-10", user=key.owner)

    assert (day.period, month.period, member.month_credits) == (dt.date(2026, 11, 1), "2026-10", 4)
