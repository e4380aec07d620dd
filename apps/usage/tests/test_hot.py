"""The gateway's async holds and settlements: the same rules as the services, from the event
loop (PostgreSQL's async pool) or a worker thread (SQLite)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from django.db import connection

from apps.usage.exceptions import Limit, QuotaExceeded
from apps.usage.hot import ahold_place, ahold_settle
from apps.usage.models import Hold, LedgerEntry, Outcome
from apps.usage.reconcile import counters_reconcile
from apps.usage.selectors import budget_status
from apps.usage.tests.conftest import REQUEST_COST, make_key
from apps.usage.tests.test_races import BUDGET, FITTING, room_of, setup_budget

pytestmark = pytest.mark.django_db(transaction=True)


async def place(key, world, **options):
    return await ahold_place(
        api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id,
        catalog_model=world.chat_model, prompt_tokens=options.pop("prompt_tokens", 1000),
        max_completion_tokens=options.pop("max_completion_tokens", 1000), **options,
    )  # fmt: skip


async def settle(key, hold_id, completion_tokens=1000):
    return await ahold_settle(
        hold_id=hold_id, api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id,
        prompt_tokens=1000, completion_tokens=completion_tokens, outcome=Outcome.OK,
        latency_ms=5, estimated=False,
    )  # fmt: skip


def status_of(key):
    return budget_status(api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id)


async def in_thread(read):
    """A read through Django from a worker thread, whose connection is closed after."""

    def run():
        try:
            return read()
        finally:
            connection.close()

    return await asyncio.to_thread(run)


def test_it_holds_then_settles_and_reports_the_budgets_after(world):
    key = make_key(world, total_limit=Decimal(1))

    async def request():
        hold = await place(key, world)
        held = await in_thread(lambda: status_of(key))
        return hold, held, await settle(key, hold.pk, completion_tokens=500)

    hold, held, settlement = asyncio.run(request())
    assert hold.amount == REQUEST_COST
    assert held.key_total.held == REQUEST_COST
    entry = LedgerEntry.objects.get()
    assert (settlement.entry.pk, settlement.entry.credits) == (entry.pk, Decimal("0.00125"))
    assert settlement.status == status_of(key)
    assert settlement.status.limited_by == Limit.KEY_TOTAL
    assert settlement.status.remaining == Decimal("0.99875")
    assert not Hold.objects.exists()
    assert counters_reconcile() == []


def test_it_settles_once_and_still_reports_the_budgets(world):
    key = make_key(world)

    async def request():
        hold = await place(key, world)
        return await settle(key, hold.pk), await settle(key, hold.pk)

    first, second = asyncio.run(request())
    assert first.entry is not None
    assert second.entry is None
    assert second.status == first.status == status_of(key)
    assert LedgerEntry.objects.count() == 1


def test_it_refuses_or_lowers_max_tokens_like_hold_place(world):
    key = make_key(world, monthly_limit=Decimal("0.0015"))  # the prompt and 666 tokens fit

    with pytest.raises(QuotaExceeded) as refused:
        asyncio.run(place(key, world))
    lowered = asyncio.run(place(key, world, allow_partial=True))

    assert (refused.value.limit, refused.value.remaining) == (Limit.KEY_MONTHLY, Decimal("0.0015"))
    assert lowered.max_completion_tokens == 666
    assert Hold.objects.get().pk == lowered.pk


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite runs one writer at a time")
@pytest.mark.parametrize("budget", ["key_total", "member_monthly", "grant"])
def test_it_never_lets_concurrent_requests_on_one_event_loop_overspend(world, budget):
    keys, read = setup_budget(world, budget)

    async def request(number: int):
        key = keys[number % len(keys)]
        try:
            hold = await place(key, world)
        except QuotaExceeded as exc:
            return exc
        room = await in_thread(lambda: room_of(read()))
        return room, await settle(key, hold.pk)

    async def race():
        return await asyncio.gather(*(request(number) for number in range(100)))

    results = asyncio.run(race())
    served = [result for result in results if not isinstance(result, QuotaExceeded)]
    assert len(served) == FITTING
    assert {exc.limit for exc in results if isinstance(exc, QuotaExceeded)} == {budget}
    assert min(room for room, _ in served) >= 0
    limit, used, held = read()
    assert (limit, used, held) == (BUDGET, FITTING * REQUEST_COST, 0)
    assert LedgerEntry.objects.count() == FITTING
    assert counters_reconcile() == []
