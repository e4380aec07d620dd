"""Ready holds (``apps.usage.ready``): a key sending requests in a row finds its next hold
already placed; nothing of the accounting changes. Each test runs one event loop, as a gateway
process does, on PostgreSQL."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from django.db import connection

from apps.usage import ledger, ready
from apps.usage.models import Hold, LedgerEntry
from apps.usage.reconcile import counters_reconcile
from apps.usage.tests.conftest import make_key, plan_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="ready holds are PostgreSQL's"),
]

USAGE = ledger.Usage(1000, 200)  # less than the hold: each settlement gives some back


def in_a_row(plan, times: int):
    """``times`` requests of ``plan`` one after another, each settled for USAGE before the
    next: their holds, and whether each was ready before it was asked for."""

    async def requests():
        holds, was_ready = [], []
        for _ in range(times):
            waiting = ready.registry().ready.get(plan.api_key_id)
            if waiting is not None:
                await asyncio.gather(waiting.placing, return_exceptions=True)
            hold = await ledger.aplace(plan)
            was_ready.append(waiting is not None and hold is waiting.placing.result())
            holds.append(hold)
            await ledger.asettle(hold, USAGE)
        await ledger.adrain()
        return holds, was_ready

    return asyncio.run(requests())


def test_a_key_sending_requests_in_a_row_takes_ready_holds_and_is_told_exactly_what_is_left(
    world,
):
    key = make_key(world, monthly_limit=Decimal("1"))
    plan = plan_for(key, world, version=b"entry")
    cost = ledger.charge(plan.hold(), USAGE)

    holds, was_ready = in_a_row(plan, 5)

    assert was_ready == [False, False, True, True, True]
    for number, hold in enumerate(holds, start=1):
        after = ledger.budgets_after(hold, USAGE)
        assert after.budget("key_monthly").left == Decimal(1) - number * cost
    assert LedgerEntry.objects.count() == 5
    assert not Hold.objects.exists()  # the last ready hold was withdrawn at the drain
    assert counters_reconcile() == []


def test_a_request_served_from_a_larger_ready_hold_pays_at_most_its_own_hold(world):
    key = make_key(world)
    large = plan_for(key, world, max_completion_tokens=1000, version=b"entry")
    small = plan_for(key, world, max_completion_tokens=10, version=b"entry")
    over = ledger.Usage(1000, 500)  # more than the small request may cost

    async def requests():
        for _ in range(2):
            await ledger.asettle(await ledger.aplace(large), USAGE)
        await ready.registry().ready[key.pk].placing
        hold = await ledger.aplace(small)
        entry = await ledger.asettle(hold, over)
        await ledger.adrain()
        return hold, entry

    hold, entry = asyncio.run(requests())

    assert hold.amount == large.hold().amount  # the ready one
    assert entry.credits == small.hold().amount
    assert entry.capped
    assert not Hold.objects.exists()
    assert counters_reconcile() == []


@pytest.mark.parametrize(
    "change",
    [
        {"version": b"another entry"},  # the key, its grant or the member's limit changed
        {"max_completion_tokens": 2000},  # more than the ready hold covers
    ],
    ids=["changed-key", "larger-request"],
)
def test_a_ready_hold_that_does_not_serve_the_next_request_is_withdrawn(world, change):
    key = make_key(world)
    plan = plan_for(key, world, version=b"entry")
    other = plan_for(key, world, **{"version": b"entry", **change})

    async def requests():
        for _ in range(2):
            await ledger.asettle(await ledger.aplace(plan), USAGE)
        waiting = ready.registry().ready[key.pk]
        placed = await waiting.placing
        hold = await ledger.aplace(other)
        await ledger.asettle(hold, USAGE)
        await ledger.adrain()
        return placed, hold

    placed, hold = asyncio.run(requests())

    assert hold.pk != placed.pk
    assert not LedgerEntry.objects.filter(hold_id=placed.pk).exists()  # withdrawn: no row
    assert LedgerEntry.objects.count() == 3
    assert not Hold.objects.exists()
    assert counters_reconcile() == []


def test_a_ready_hold_placed_last_month_is_not_taken(world, monkeypatch):
    key = make_key(world)
    plan = plan_for(key, world, version=b"entry")

    async def requests():
        for _ in range(2):
            await ledger.asettle(await ledger.aplace(plan), USAGE)
        placed = await ready.registry().ready[key.pk].placing
        monkeypatch.setattr(ready, "period_for", lambda: "2099-01")  # the month turned
        hold = await ledger.aplace(plan)
        await ledger.adrain()
        return placed, hold

    placed, hold = asyncio.run(requests())

    assert hold.pk != placed.pk
    assert not LedgerEntry.objects.filter(hold_id=placed.pk).exists()
    assert list(Hold.objects.values_list("pk", flat=True)) == [hold.pk]


def test_an_unused_ready_hold_is_withdrawn_after_its_seconds(world, settings):
    settings.GATEWAY_READY_HOLD_SECONDS = 1
    key = make_key(world)
    plan = plan_for(key, world, version=b"entry")

    async def requests():
        for _ in range(2):
            await ledger.asettle(await ledger.aplace(plan), USAGE)
        registry = ready.registry()
        waiting = registry.ready[key.pk]
        placed = await waiting.placing
        loop = asyncio.get_running_loop()
        await asyncio.sleep(waiting.timer.when() - loop.time() + 0.01)  # its own timer's time
        gone = key.pk not in registry.ready
        await asyncio.gather(*registry.withdrawing)
        return placed, gone

    placed, gone = asyncio.run(requests())

    assert gone
    assert not LedgerEntry.objects.filter(hold_id=placed.pk).exists()

    assert not Hold.objects.exists()
    assert LedgerEntry.objects.count() == 2
    assert counters_reconcile() == []


def test_no_ready_hold_waits_near_the_end_of_a_budget(world):
    key = make_key(world)
    plan = plan_for(key, world, version=b"entry")
    cost = plan.hold().amount
    key.monthly_limit = cost * (ready.ROOM + 2)  # room for fewer than ROOM more after two
    key.save(update_fields=["monthly_limit"])

    async def requests():
        for _ in range(2):
            await ledger.asettle(await ledger.aplace(plan), ledger.Usage(1000, 1000))
        found = ready.registry().ready.get(key.pk)
        await ledger.adrain()
        return found

    assert asyncio.run(requests()) is None
    assert LedgerEntry.objects.count() == 2


def test_without_a_version_no_hold_is_made_ready(world):
    key = make_key(world)
    plan = plan_for(key, world)  # a caller that does not say how it read the key

    async def requests():
        for _ in range(3):
            await ledger.asettle(await ledger.aplace(plan), USAGE)
        return dict(ready.registry().ready)

    assert asyncio.run(requests()) == {}
