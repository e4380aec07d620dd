"""The hold and the slot are taken at the same time (``admission._hold_and_slot``): a client
that leaves at any moment of it leaves no slot taken and no hold open, with one ledger row."""

from __future__ import annotations

import asyncio

import pytest

from apps.gateway.admission import _hold_and_slot
from apps.gateway.slots import slots_close
from apps.gateway.tests.test_slots import make_setup, slot, slot_stats, until_slots
from apps.keys.services import api_key_create
from apps.usage import ledger
from apps.usage.models import Hold, LedgerEntry, Outcome
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)


class GrantedThenCancelled:
    """A slot whose grant arrives in the same turn of the loop as the client's disconnect
    (Django cancels the request's task): the slot is taken, the request is gone."""

    def __init__(self, real, request: asyncio.Task, placed: asyncio.Event) -> None:
        self.real, self.request, self.placed = real, request, placed

    async def acquire(self) -> None:
        await self.placed.wait()  # the hold is placed: the request awaits the slot
        await self.real.acquire()
        asyncio.get_running_loop().call_soon(self.request.cancel)

    def release(self):
        return self.real.release()

    @property
    def model(self) -> str:
        return self.real.model


def test_a_disconnect_as_the_slot_is_granted_gives_back_the_slot_and_the_hold(
    world, settings, monkeypatch
):
    setup = make_setup("redis", settings)
    key, _ = api_key_create(grant=world.grant, owner=world.bob, name="leaving")
    plan = ledger.Plan(
        api_key_id=key.id, grant_id=key.grant_id, user_id=key.owner_id,
        model=world.chat_model, prompt_tokens=10, max_completion_tokens=10, ttl_seconds=300,
    )  # fmt: skip

    placed, place = asyncio.Event(), ledger.aplace

    async def place_and_tell(plan):
        hold = await place(plan)
        placed.set()
        return hold

    monkeypatch.setattr(ledger, "aplace", place_and_tell)

    async def scenario():
        try:

            async def admit():
                granted = GrantedThenCancelled(slot(setup), request, placed)
                return await _hold_and_slot(plan, granted)

            request = asyncio.ensure_future(admit())
            with pytest.raises(asyncio.CancelledError):
                await request
            what = "the slot given back by the release started in the background"
            await until_slots(setup, 0, 0, what=what)
            await ledger.adrain()  # the hold's settlement, started in the background too
            return await slot_stats(setup.model)
        finally:
            await slots_close()

    after = asyncio.run(scenario())
    assert after == {"in_flight": 0, "queued": 0}
    wait_for_settlements()
    assert not Hold.objects.exists()
    rows = list(LedgerEntry.objects.values_list("outcome", "credits"))
    assert rows == [(Outcome.CLIENT_DISCONNECTED, 0)]
