from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from apps.usage import rollup
from apps.usage.models import LedgerEntry, UsageBucket
from apps.usage.rollup import ledger_rollup
from apps.usage.tests.conftest import make_key
from apps.usage.tests.ledger_rows import ledger_row, warsaw

pytestmark = pytest.mark.django_db


def bucket_totals() -> dict:
    return UsageBucket.objects.aggregate(
        credits=Sum("credits"), requests=Sum("requests"), prompt=Sum("prompt_tokens")
    )


def ledger_totals() -> dict:
    sums = LedgerEntry.objects.aggregate(credits=Sum("credits"), prompt=Sum("prompt_tokens"))
    return {**sums, "requests": LedgerEntry.objects.count()}


def test_it_adds_a_keys_requests_of_one_utc_hour_to_one_bucket(world, key):
    model = world.chat_model
    ledger_row(key, model=model, created=warsaw(2026, 11, 3, 10, 5), credits="0.1")
    ledger_row(key, model=model, created=warsaw(2026, 11, 3, 10, 55), credits="0.2",
               estimated=True, prompt_tokens=7, completion_tokens=3)  # fmt: skip
    ledger_row(key, model=model, created=warsaw(2026, 11, 3, 11, 0), credits="0.4")

    assert ledger_rollup() == 3

    buckets = list(UsageBucket.objects.order_by("hour"))
    assert [b.hour for b in buckets] == [
        dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC),  # 10:00 in Warsaw (CET) is 09:00 UTC
        dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC),
    ]
    first = buckets[0]
    assert (first.requests, first.credits, first.estimated_requests) == (2, Decimal("0.3"), 1)
    assert (first.prompt_tokens, first.completion_tokens) == (107, 53)
    assert (first.grant_id, first.user_id, first.model_id) == (world.grant.pk, world.alice.pk,
                                                               model.pk)  # fmt: skip
    assert first.period == "2026-11"
    assert not LedgerEntry.objects.filter(rolled_up=False).exists()


def test_it_keeps_keys_models_and_members_apart(world, key):
    other_key = make_key(world, owner=world.bob)
    moment = warsaw(2026, 11, 3, 10, 5)
    ledger_row(key, model=world.chat_model, created=moment)
    ledger_row(key, model=world.embed_model, created=moment)
    ledger_row(other_key, model=world.chat_model, created=moment)

    ledger_rollup()

    assert UsageBucket.objects.count() == 3
    assert UsageBucket.objects.get(api_key=other_key).user == world.bob


def test_running_it_twice_is_running_it_once(world, key):
    for minute in range(5):
        ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 10, minute))
    assert ledger_rollup() == 5
    before = list(UsageBucket.objects.values())

    assert ledger_rollup() == 0

    assert list(UsageBucket.objects.values()) == before
    assert bucket_totals()["credits"] == Decimal("1.25")


def test_a_row_settled_after_a_run_is_added_to_its_hours_bucket(world, key):
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 10, 5), credits="1")
    ledger_rollup()
    ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 10, 6), credits="2.5")

    assert ledger_rollup() == 1

    bucket = UsageBucket.objects.get()
    assert (bucket.requests, bucket.credits) == (2, Decimal("3.5"))


def test_it_rolls_a_backlog_in_batches(world, key):
    for minute in range(7):
        ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 10, minute))

    assert ledger_rollup(limit=3) == 7

    assert bucket_totals() == ledger_totals()


def test_it_refuses_a_limit_that_is_not_a_positive_integer(world):
    for limit in (0, -1, True, 2.5, "10"):
        with pytest.raises(ValueError, match="limit"):
            ledger_rollup(limit=limit)


def test_sums_stay_exact_decimals(world, key):
    for _ in range(10):
        ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, 10, 1),
                   credits="0.100001")  # fmt: skip
    ledger_rollup(limit=4)

    assert UsageBucket.objects.get().credits == Decimal("1.000010")


def make_rows(world, count: int) -> None:
    keys = [make_key(world), make_key(world, owner=world.bob)]
    rows = [
        LedgerEntry(
            api_key=keys[n % 2], user_id=keys[n % 2].owner_id, grant=world.grant,
            model=world.chat_model, period="2026-11", prompt_tokens=n, completion_tokens=1,
            credits=Decimal("0.000001") * n, outcome="ok", latency_ms=1,
            created=warsaw(2026, 11, 3, n % 24, n % 60),
        )
        for n in range(count)
    ]  # fmt: skip
    LedgerEntry.objects.bulk_create(rows)


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_count_every_row_once(world):
    make_rows(world, 3000)
    start = threading.Barrier(4)
    rolled: list[int] = []
    errors: list[BaseException] = []

    def run():
        try:
            start.wait()
            rolled.append(ledger_rollup(limit=100))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert sum(rolled) == 3000
    assert bucket_totals() == ledger_totals()


@pytest.mark.django_db(transaction=True)
def test_a_run_skips_rows_another_run_has_claimed_and_not_committed(world, monkeypatch):
    make_rows(world, 50)
    claimed, release = threading.Event(), threading.Event()
    add = rollup._add
    slow: list[int] = []

    def add_slowly(buckets):
        if threading.current_thread().name == "slow":
            claimed.set()
            release.wait(10)
        add(buckets)

    monkeypatch.setattr(rollup, "_add", add_slowly)

    def run_slowly():
        slow.append(ledger_rollup(limit=20))
        connection.close()

    thread = threading.Thread(target=run_slowly, name="slow")
    thread.start()
    assert claimed.wait(10)
    fast = ledger_rollup(limit=20)  # while the slow run holds its first 20 rows
    release.set()
    thread.join()

    assert fast == 30 and slow == [20]
    assert bucket_totals() == ledger_totals()


def test_it_adds_to_existing_and_new_buckets_in_one_run(world, key, monkeypatch):
    monkeypatch.setattr(rollup, "ADD_CHUNK", 2)  # SQLite's statements of rows of values
    for hour in range(5):
        ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, hour, 1))
    ledger_rollup()
    for hour in range(3, 8):
        ledger_row(key, model=world.chat_model, created=warsaw(2026, 11, 3, hour, 2))

    assert ledger_rollup() == 5

    assert UsageBucket.objects.count() == 8
    assert list(UsageBucket.objects.order_by("hour").values_list("requests", flat=True)) == [
        1, 1, 1, 2, 2, 1, 1, 1,
    ]  # fmt: skip
    assert bucket_totals() == ledger_totals()
