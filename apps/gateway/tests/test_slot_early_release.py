"""A slot taken ahead of ``async with`` (``acquire``) and given back early (``release``),
as the gateway does when it overlaps the slot's round trips with the hold's and the
settlement's: each slot is taken once and released once, whatever the order."""

from __future__ import annotations

import asyncio

from apps.gateway.tests.test_slots import (  # noqa: F401
    backend,
    run,
    slot,
    slot_stats,
    until_slots,
)


def test_a_slot_acquired_ahead_is_not_taken_twice_by_async_with(backend):  # noqa: F811
    async def scenario():
        first = slot(backend, max_concurrency=2)
        await first.acquire()
        async with first:
            inside = await slot_stats(backend.model)
        return inside, await slot_stats(backend.model)

    inside, after = run(scenario)
    assert inside == {"in_flight": 1, "queued": 0}
    assert after == {"in_flight": 0, "queued": 0}


def test_a_slot_released_early_frees_its_place_once(backend):  # noqa: F811
    async def scenario():
        taken = slot(backend, max_concurrency=1, queue_size=1)
        async with taken:
            waiter = asyncio.create_task(slot(backend).acquire())
            await until_slots(backend, 1, 1, what="a waiter queued behind the taken slot")
            queued = await slot_stats(backend.model)
            await taken.release()
            await asyncio.wait_for(waiter, 3)  # the freed slot went to the waiter
            handed_over = await slot_stats(backend.model)
        # leaving the block released nothing more: the waiter still holds its slot
        still = await slot_stats(backend.model)
        nothing = await slot(backend).release()  # never taken: nothing to release
        return queued, handed_over, still, nothing

    queued, handed_over, still, nothing = run(scenario)
    assert queued == {"in_flight": 1, "queued": 1}
    assert handed_over == still == {"in_flight": 1, "queued": 0}
    assert nothing is None
