"""Hundreds of concurrent requests against a nearly exhausted budget: exactly the requests that
fit get through, the budget never goes below zero, and the counters equal the ledger after.
Sweepers racing late settles close every hold exactly once."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.limits.services import member_limit_set
from apps.usage.exceptions import QuotaExceeded
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter, Outcome
from apps.usage.periods import period_for
from apps.usage.reconcile import counters_reconcile
from apps.usage.services import hold_settle, holds_sweep
from apps.usage.tests.conftest import REQUEST_COST, make_key, place

pytestmark = pytest.mark.django_db(transaction=True)

ATTEMPTS = 200
WORKERS = 32  # each holds one PostgreSQL connection; max_connections is 100
FITTING = 7
BUDGET = FITTING * REQUEST_COST + Decimal("0.0015")  # 7 requests fit, the 8th does not


def race(attempt, *, watch) -> list:
    """Run ``attempt(n)`` for n < ATTEMPTS on WORKERS threads started at once; meanwhile
    ``watch()`` samples the budget's room. Returns the results (or QuotaExceeded) and the
    smallest room seen."""
    numbers, lock, done = iter(range(ATTEMPTS)), threading.Lock(), threading.Event()
    start = threading.Barrier(WORKERS + 1)

    def work() -> list:
        results = []
        try:
            start.wait(timeout=60)
            while True:
                with lock:
                    number = next(numbers, None)
                if number is None:
                    return results
                try:
                    results.append(attempt(number))
                except QuotaExceeded as refused:
                    results.append(refused)
        finally:
            connection.close()

    def sample() -> Decimal:
        smallest = watch()
        try:
            start.wait(timeout=60)
            while not done.is_set():
                smallest = min(smallest, watch())
        finally:
            connection.close()
        return smallest

    with ThreadPoolExecutor(WORKERS + 1) as pool:
        watcher = pool.submit(sample)
        workers = [pool.submit(work) for _ in range(WORKERS)]
        try:  # an unexpected error (a deadlock, say) fails the test instead of hanging it
            results = [result for worker in workers for result in worker.result()]
        finally:
            done.set()
        return results, watcher.result()


def request(keys):
    cycle, lock = itertools.cycle(keys), threading.Lock()

    def attempt(number: int):
        with lock:
            key = next(cycle)
        hold = place(key, world_of[key.grant_id], prompt_tokens=1000, max_completion_tokens=1000)
        return hold_settle(
            hold_id=hold.pk, prompt_tokens=1000, completion_tokens=1000, outcome=Outcome.OK,
            latency_ms=number, estimated=False,
        )  # fmt: skip

    return attempt


world_of: dict = {}


def room_of(row) -> Decimal:
    """limit - used - held of one counter row, unclamped."""
    return row[0] - row[1] - row[2]


def setup_budget(world, budget: str):
    """Keys to race with, and how to read the squeezed budget's (limit, used, held)."""
    period = period_for()
    if budget == "key_total":
        key = make_key(world, total_limit=BUDGET)
        rows = ApiKey.objects.filter(pk=key.pk)
        return [key], lambda: rows.values_list("total_limit", "credits_used", "credits_held")[0]
    if budget == "key_monthly":
        key = make_key(world, monthly_limit=BUDGET)
        month = KeyMonthCounter.objects.filter(api_key=key, period=period)
        return [key], lambda: (BUDGET, *(month.values_list("used", "held").first() or (0, 0)))
    if budget == "member_monthly":
        member_limit_set(grant=world.grant, user=world.bob, monthly_limit=BUDGET, changed_by=None)
        keys = [make_key(world, owner=world.bob) for _ in range(3)]
        month = MemberMonthCounter.objects.filter(grant=world.grant, user=world.bob, period=period)
        return keys, lambda: (BUDGET, *(month.values_list("used", "held").first() or (0, 0)))
    Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=BUDGET)
    keys = [make_key(world, owner=owner) for owner in (world.alice, world.bob) for _ in range(2)]
    grant = Grant.objects.filter(pk=world.grant.pk)
    return keys, lambda: grant.values_list("credits_allocated", "credits_used", "credits_held")[0]


@pytest.mark.parametrize("budget", ["key_total", "key_monthly", "member_monthly", "grant"])
def test_it_never_lets_concurrent_requests_overspend(world, budget):
    world_of[world.grant.pk] = world
    keys, read = setup_budget(world, budget)
    results, smallest_room = race(request(keys), watch=lambda: room_of(read()))

    served = [result for result in results if not isinstance(result, QuotaExceeded)]
    refused = [result for result in results if isinstance(result, QuotaExceeded)]
    assert len(served) == FITTING
    assert len(refused) == ATTEMPTS - FITTING
    assert {exc.limit for exc in refused} == {budget}
    assert smallest_room >= 0
    limit, used, held = read()
    assert (used, held) == (FITTING * REQUEST_COST, 0)
    assert limit - used - held == Decimal("0.0015")
    assert LedgerEntry.objects.count() == FITTING
    assert not Hold.objects.exists()
    assert counters_reconcile() == []


def test_it_never_lets_concurrent_partial_holds_overspend(world):
    world_of[world.grant.pk] = world
    keys, read = setup_budget(world, "key_total")

    def attempt(number: int):
        hold = place(keys[0], world, max_completion_tokens=1000, allow_partial=True)
        return hold_settle(
            hold_id=hold.pk, prompt_tokens=1000, completion_tokens=hold.max_completion_tokens,
            outcome=Outcome.OK, latency_ms=number, estimated=False,
        )  # fmt: skip

    results, smallest_room = race(attempt, watch=lambda: room_of(read()))
    served = [result for result in results if not isinstance(result, QuotaExceeded)]
    # 7 whole requests, then one lowered to what the last 0.0015 credits afford (666 tokens).
    assert sorted(entry.completion_tokens for entry in served) == [666] + [1000] * FITTING
    assert smallest_room >= 0
    limit, used, held = read()
    assert (limit - used, held) == (Decimal("0.000001"), 0)
    assert counters_reconcile() == []


def test_it_closes_each_hold_once_with_sweepers_racing_late_settles(world):
    keys = [make_key(world, owner=owner) for owner in (world.alice, world.bob)]
    holds = [place(keys[n % 2], world, ttl_seconds=60).pk for n in range(40)]
    later = timezone.now() + dt.timedelta(seconds=61)
    start = threading.Barrier(10)

    def sweep() -> int:
        try:
            start.wait(timeout=60)
            return holds_sweep(now=later)
        finally:
            connection.close()

    def settle(some: list[int]) -> int:
        try:
            start.wait(timeout=60)
            settled = [
                hold_settle(
                    hold_id=hold_id,
                    prompt_tokens=1000,
                    completion_tokens=1000,
                    outcome=Outcome.OK,
                    latency_ms=61_000,
                    estimated=False,
                )
                for hold_id in some
            ]
            return sum(entry is not None for entry in settled)
        finally:
            connection.close()

    with ThreadPoolExecutor(10) as pool:
        sweeps = [pool.submit(sweep) for _ in range(2)]
        settles = [pool.submit(settle, holds[n::8]) for n in range(8)]
        swept = sum(future.result() for future in sweeps)
        settled = sum(future.result() for future in settles)

    assert swept + settled == len(holds)
    assert LedgerEntry.objects.count() == settled  # a withdrawn hold leaves no row
    assert not Hold.objects.exists()
    grant = Grant.objects.get(pk=world.grant.pk)
    assert (grant.credits_used, grant.credits_held) == (settled * REQUEST_COST, 0)
    assert counters_reconcile() == []
