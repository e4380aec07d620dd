"""Hundreds of concurrent requests against a nearly exhausted budget: exactly the requests that
fit get through, the budget never goes below zero, and the counters equal the ledger after.
Sweepers racing late settles and withdrawals end every hold exactly once.

Each race runs the ways the ledger runs in production: ``sync`` (``place``/``settle``/
``withdraw`` through the ORM, on threads: Celery workers, SQLite), ``async`` (``aplace``/
``asettle``/``awithdraw`` as coroutines on several event loops, each with its own connection
pool, as several gateway processes: PostgreSQL's functions, settlements written in batches) and
``mixed`` (both at once). No deadlock can hang them: every path locks in the ledger's one order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.limits.services import member_limit_set
from apps.usage import ledger
from apps.usage.exceptions import QuotaExceeded
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter
from apps.usage.periods import period_for
from apps.usage.reconcile import counters_reconcile
from apps.usage.services import holds_sweep
from apps.usage.tests.conftest import REQUEST_COST, make_key, plan_for

pytestmark = pytest.mark.django_db(transaction=True)

ATTEMPTS = 200
WORKERS = 32  # sync: threads, each with one PostgreSQL connection; max_connections is 100
LOOPS = 4  # async: event loops, each with a pool of GATEWAY_DB_POOL_SIZE (10) connections
IN_FLIGHT = 25  # async: requests at once on each loop
FITTING = 7
BUDGET = FITTING * REQUEST_COST + Decimal("0.0015")  # 7 requests fit, the 8th does not
# On SQLite the async way is the sync way in a thread: the sync way is the one to race there.
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the async way is PostgreSQL's"
)
WAYS = ["sync", *(pytest.param(way, marks=on_postgresql) for way in ("async", "mixed"))]


def closing(work: Callable) -> Callable:
    """``work`` on a thread of its own, whose Django connection is closed after."""

    def run(*args):
        try:
            return work(*args)
        finally:
            connection.close()

    return run


@dataclass
class Request:
    """What attempt ``n`` asks for, and what it reports having used of its hold."""

    plan: Callable[[int], ledger.Plan]
    usage: Callable[[Hold, int], ledger.Usage]

    def place_and_settle(self, number: int):
        try:
            hold = ledger.place(self.plan(number))
        except QuotaExceeded as refused:
            return refused
        return ledger.settle(hold, self.usage(hold, number))

    async def aplace_and_asettle(self, number: int):
        try:
            hold = await ledger.aplace(self.plan(number))
        except QuotaExceeded as refused:
            return refused
        return await ledger.asettle(hold, self.usage(hold, number))


def race(way: str, request: Request, *, watch: Callable[[], Decimal]) -> tuple[list, Decimal]:
    """Attempts 0 … ATTEMPTS-1 of ``request``, ``way``'s way, all started at once; meanwhile
    ``watch()`` samples the budget's room. Returns the results (ledger rows or QuotaExceeded)
    and the smallest room seen."""
    numbers, lock, done = iter(range(ATTEMPTS)), threading.Lock(), threading.Event()
    threads = {"sync": WORKERS, "async": 0, "mixed": WORKERS // 2}[way]
    loops = {"sync": 0, "async": LOOPS, "mixed": LOOPS // 2}[way]
    start = threading.Barrier(threads + loops + 1)

    def take() -> int | None:
        with lock:
            return next(numbers, None)

    @closing
    def on_thread() -> list:
        start.wait(timeout=60)
        results = []
        while (number := take()) is not None:
            results.append(request.place_and_settle(number))
        return results

    async def coroutines() -> list:
        async def one() -> list:
            results = []
            while (number := take()) is not None:
                results.append(await request.aplace_and_asettle(number))
            return results

        every = await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))
        return [result for results in every for result in results]

    @closing
    def on_loop() -> list:
        start.wait(timeout=60)
        return asyncio.run(coroutines())

    @closing
    def sample() -> Decimal:
        smallest = watch()
        start.wait(timeout=60)
        while not done.is_set():
            smallest = min(smallest, watch())
        return smallest

    with ThreadPoolExecutor(threads + loops + 1) as pool:
        watcher = pool.submit(sample)
        workers = [pool.submit(on_thread) for _ in range(threads)]
        workers += [pool.submit(on_loop) for _ in range(loops)]
        try:  # an unexpected error (a deadlock, say) fails the test instead of hanging it
            results = [result for worker in workers for result in worker.result(timeout=120)]
        finally:
            done.set()
        return results, watcher.result()


def whole(keys, world) -> Request:
    """Requests of 1000 + 1000 tokens that use all they hold, by ``keys`` in turn."""
    cycle, lock = itertools.cycle(keys), threading.Lock()

    def plan(number: int) -> ledger.Plan:
        with lock:
            key = next(cycle)
        return plan_for(key, world)

    return Request(plan, lambda hold, number: ledger.Usage(1000, 1000, latency_ms=number))


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


def served_and_refused(results: list) -> tuple[list, list]:
    refused = [result for result in results if isinstance(result, QuotaExceeded)]
    return [result for result in results if not isinstance(result, QuotaExceeded)], refused


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("budget", ["key_total", "key_monthly", "member_monthly", "grant"])
def test_it_never_lets_concurrent_requests_overspend(world, budget, way):
    keys, read = setup_budget(world, budget)
    results, smallest_room = race(way, whole(keys, world), watch=lambda: room_of(read()))

    served, refused = served_and_refused(results)
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


@pytest.mark.parametrize("way", WAYS)
def test_it_never_lets_concurrent_partial_holds_overspend(world, way):
    keys, read = setup_budget(world, "key_total")
    request = Request(
        lambda number: plan_for(keys[0], world, max_completion_tokens=1000, allow_partial=True),
        lambda hold, number: ledger.Usage(1000, hold.max_completion_tokens, latency_ms=number),
    )

    results, smallest_room = race(way, request, watch=lambda: room_of(read()))
    served, _ = served_and_refused(results)
    # 7 whole requests, then one lowered to what the last 0.0015 credits afford (666 tokens).
    assert sorted(entry.completion_tokens for entry in served) == [666] + [1000] * FITTING
    assert smallest_room >= 0
    limit, used, held = read()
    assert (limit - used, held) == (Decimal("0.000001"), 0)
    assert counters_reconcile() == []


HOLDS = 60


def ends_racing(world, way: str) -> dict:
    """HOLDS expired holds ended at once by two sweepers and, ``way``'s way, by settles and
    withdrawals: the holds, those settled, those withdrawn and how many were swept."""
    keys = [make_key(world, owner=owner) for owner in (world.alice, world.bob)]
    holds = [ledger.place(plan_for(keys[n % 2], world, ttl_seconds=60)) for n in range(HOLDS)]
    later = timezone.now() + dt.timedelta(seconds=61)
    usage = ledger.Usage(1000, 1000, latency_ms=61_000)
    # The sweepers go from the first hold up, the settlers from the last down, the withdrawers
    # from the middle up and round: each meets the others, on every hold one of each.
    settlers = [holds[::-1][n::4] for n in range(4)]
    withdrawers = [(holds[HOLDS // 2 :] + holds[: HOLDS // 2])[n::4] for n in range(4)]

    def sweep() -> int:
        return holds_sweep(now=later)

    def settle(some: list[Hold]) -> set[int]:
        return {hold.pk for hold in some if ledger.settle(hold, usage) is not None}

    def withdraw(some: list[Hold]) -> set[int]:
        return {hold.pk for hold in some if ledger.withdraw(hold)}

    async def asettle(some: list[Hold]) -> set[int]:
        entries = await asyncio.gather(*(ledger.asettle(hold, usage) for hold in some))
        return {hold.pk for hold, entry in zip(some, entries, strict=True) if entry is not None}

    async def awithdraw(some: list[Hold]) -> set[int]:
        ended = await asyncio.gather(*(ledger.awithdraw(hold) for hold in some))
        return {hold.pk for hold, done in zip(some, ended, strict=True) if done}

    def on_loop(end) -> Callable:
        """``end`` on an event loop of its own, each group of holds as one task."""

        def run(groups: list[list[Hold]]) -> set[int]:
            async def every_group():
                return await asyncio.gather(*(end(group) for group in groups))

            return set().union(*asyncio.run(every_group()))

        return run

    jobs = {  # who: [(how, what)]; the sweepers run the sync way in every way (Celery)
        "sync": {"settled": [(settle, some) for some in settlers],
                 "withdrawn": [(withdraw, some) for some in withdrawers]},
        "async": {"settled": [(on_loop(asettle), settlers)],
                  "withdrawn": [(on_loop(awithdraw), withdrawers)]},
        "mixed": {"settled": [(settle, some) for some in settlers],
                  "withdrawn": [(on_loop(awithdraw), [some]) for some in withdrawers]},
    }[way]  # fmt: skip
    jobs["swept"] = [(sweep, None), (sweep, None)]
    start = threading.Barrier(sum(len(each) for each in jobs.values()))

    @closing
    def together(how, what):
        start.wait(timeout=60)
        return how() if what is None else how(what)

    with ThreadPoolExecutor(start.parties) as pool:
        futures = {who: [pool.submit(together, *job) for job in each] for who, each in jobs.items()}
        ended = {who: [future.result(timeout=120) for future in each]
                 for who, each in futures.items()}  # fmt: skip
    return {
        "holds": {hold.pk for hold in holds}, "swept": sum(ended["swept"]),
        "settled": set().union(*ended["settled"]), "withdrawn": set().union(*ended["withdrawn"]),
    }  # fmt: skip


@pytest.mark.parametrize("way", WAYS)
def test_it_ends_each_hold_once_with_sweepers_racing_settles_and_withdrawals(world, way):
    ends = ends_racing(world, way)

    settled, withdrawn = ends["settled"], ends["withdrawn"]
    assert not settled & withdrawn
    assert settled | withdrawn <= ends["holds"]
    assert len(settled) + len(withdrawn) + ends["swept"] == HOLDS
    assert set(LedgerEntry.objects.values_list("hold_id", flat=True)) == settled
    assert LedgerEntry.objects.count() == len(settled)  # withdrawn or swept: no row
    assert not Hold.objects.exists()
    grant = Grant.objects.get(pk=world.grant.pk)
    assert (grant.credits_used, grant.credits_held) == (len(settled) * REQUEST_COST, 0)
    assert counters_reconcile() == []
