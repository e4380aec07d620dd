from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.limits.models import MemberLimit
from apps.teams.models import Membership, Team
from apps.usage import reports
from apps.usage.models import LedgerEntry
from apps.usage.rollup import ledger_rollup
from apps.usage.tests.conftest import make_key
from apps.usage.tests.ledger_rows import ledger_row, ledger_sums, warsaw

pytestmark = pytest.mark.django_db
D = Decimal


def figures(item) -> dict:
    return {
        "credits": item.credits,
        "requests": item.requests,
        "prompt_tokens": item.prompt_tokens,
        "completion_tokens": item.completion_tokens,
    }


@pytest.fixture
def busy_world(world):
    """Two keys of Alice, one of Bob, both models, 40 days of October and November 2026; the
    first 300 rows rolled up, the last 100 still in the ledger's tail."""
    randomizer = random.Random(5)
    keys = [make_key(world), make_key(world), make_key(world, owner=world.bob)]
    start = warsaw(2026, 10, 5)

    def add(count):
        for _ in range(count):
            ledger_row(
                randomizer.choice(keys),
                model=randomizer.choice([world.chat_model, world.embed_model]),
                created=start + dt.timedelta(minutes=randomizer.randrange(40 * 24 * 60)),
                credits=f"{randomizer.randrange(1, 10**6)}e-6",
                prompt_tokens=randomizer.randrange(1000),
                completion_tokens=randomizer.randrange(1000),
                estimated=randomizer.random() < 0.1,
            )

    add(300)
    ledger_rollup()
    add(100)
    assert LedgerEntry.objects.filter(rolled_up=False).count() == 100
    return keys


def test_the_daily_series_equals_the_ledger_day_by_day(world, busy_world):
    series = reports.grant_usage_series(grant=world.grant, granularity="day")

    assert series[0].period == dt.date(2026, 10, 5)
    assert series[-1].period == dt.date(2026, 11, 13)
    assert len(series) == 40
    for point in series:
        since = reports.day_start(point.period)
        until = reports.day_start(point.period + dt.timedelta(days=1))
        assert figures(point) == ledger_sums(created__gte=since, created__lt=until), point


def test_the_monthly_series_equals_the_ledger_month_by_month(world, busy_world):
    series = reports.grant_usage_series(grant=world.grant, granularity="month")

    assert [point.period for point in series] == ["2026-10", "2026-11"]
    for point in series:
        assert figures(point) == ledger_sums(period=point.period)


def test_breakdowns_equal_the_ledger(world, busy_world):
    by_model = reports.grant_usage_by_model(grant=world.grant, period="2026-11")
    assert {row.label for row in by_model} == {"chat-small", "embed-small"}
    for row in by_model:
        assert figures(row) == ledger_sums(model=row.subject, period="2026-11")
    assert by_model[0].credits >= by_model[1].credits

    ever = reports.grant_usage_by_model(grant=world.grant)
    assert sum(row.credits for row in ever) == ledger_sums()["credits"]

    key = busy_world[0]
    for row in reports.key_usage_by_model(key=key):
        assert figures(row) == ledger_sums(api_key=key, model=row.subject)
    for point in reports.key_usage_series(key=key, granularity="month"):
        assert figures(point) == ledger_sums(api_key=key, period=point.period)


def test_members_see_this_months_and_all_their_consumption(world, busy_world):
    MemberLimit.objects.create(grant=world.grant, user=world.bob, monthly_limit=D("12.5"))

    rows = reports.grant_usage_by_member(grant=world.grant, period="2026-10")

    assert [row.user for row in rows] == [world.alice, world.bob]
    for row in rows:
        assert row.month_credits == ledger_sums(user=row.user, period="2026-10")["credits"]
        assert row.total_credits == ledger_sums(user=row.user)["credits"]
    assert [row.monthly_limit for row in rows] == [None, D("12.5")]


def test_a_member_with_no_consumption_is_listed_with_zeros(world):
    [row] = reports.grant_usage_by_member(grant=world.grant, period="2026-11", user=world.bob)

    assert (row.user, row.month_credits, row.total_credits) == (world.bob, 0, 0)


def test_a_former_member_who_spent_still_has_a_row(world):
    ledger_row(make_key(world, owner=world.bob), model=world.chat_model,
               created=warsaw(2026, 11, 2, 9), credits="3")  # fmt: skip
    Membership.objects.filter(user=world.bob).delete()

    rows = reports.grant_usage_by_member(grant=world.grant, period="2026-11")

    assert {row.user: row.month_credits for row in rows} == {world.alice: 0, world.bob: 3}


def test_my_usage_lists_each_of_my_keys_across_grants(world, busy_world):
    rows = reports.user_usage_month(user=world.alice, period="2026-11")

    labels = sorted(f"alice-grant / {key.name}" for key in busy_world[:2])
    assert [row.label for row in rows] == labels
    for row in rows:
        assert figures(row) == ledger_sums(api_key=row.subject, period="2026-11")
    assert reports.user_usage_month(user=world.charlie, period="2026-11") == []


def test_reports_stay_inside_their_scope(world, busy_world):
    other_team = Team.objects.create(name="c-team")
    Membership.objects.create(team=other_team, user=world.charlie)
    other = Grant.objects.create(
        team=other_team, identifier="charlie-grant", credits_allocated=10,
        valid_from=dt.date(2026, 1, 1), valid_until=dt.date(2027, 1, 1),
    )  # fmt: skip
    charlie_key = make_key(world, owner=world.charlie)
    ApiKey.objects.filter(pk=charlie_key.pk).update(grant=other)
    charlie_key.refresh_from_db()
    ledger_row(charlie_key, model=world.chat_model, created=warsaw(2026, 11, 2, 9), credits="7")

    [point] = reports.grant_usage_series(grant=other, granularity="month")
    assert point.credits == 7
    alice = reports.grant_usage_series(grant=world.grant, granularity="month")
    assert sum(point.credits for point in alice) == ledger_sums(grant=world.grant)["credits"]
    assert [row.user for row in reports.grant_usage_by_member(grant=other, period="2026-11")] == [
        world.charlie
    ]


def test_days_without_consumption_are_zeros_within_the_asked_range(world, key):
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 12), credits="1")
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 5, 12), credits="2")

    series = reports.key_usage_series(
        key=key, granularity="day", start=dt.date(2026, 11, 2), end=dt.date(2026, 11, 4)
    )

    assert [(p.period.day, p.credits, p.requests) for p in series] == [
        (2, 0, 0), (3, 1, 1), (4, 0, 0),
    ]  # fmt: skip
    months = reports.key_usage_series(
        key=key, granularity="month", start=dt.date(2026, 9, 30), end=dt.date(2027, 1, 1)
    )
    assert [(p.period, p.credits) for p in months] == [
        ("2026-09", 0), ("2026-10", 0), ("2026-11", 3), ("2026-12", 0), ("2027-01", 0),
    ]  # fmt: skip


def test_nothing_used_is_an_empty_series(world, key):
    assert reports.grant_usage_series(grant=world.grant, granularity="day") == []
    assert reports.grant_usage_by_model(grant=world.grant) == []


def test_an_unknown_granularity_is_refused(world):
    with pytest.raises(ValueError, match="granularity"):
        reports.grant_usage_series(grant=world.grant, granularity="week")


def test_the_grant_totals_are_its_pool(world):
    world.grant.__class__.objects.filter(pk=world.grant.pk).update(
        credits_used=D("600.5"), credits_held=D("0.25")
    )

    totals = reports.grant_usage_totals(grant=world.grant)

    assert totals == {"allocated": 1000, "used": D("600.5"), "held": D("0.25"),
                      "left": D("399.25")}  # fmt: skip
