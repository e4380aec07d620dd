"""A request served from a ready hold (apps/gateway/ready.py) is billed as if it had placed its
own hold: a ready hold placed for an earlier, larger request never lets it cost more than its
own largest cost. And what a graceful shutdown leaves: no ready hold, not even one whose
withdrawal had already started."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from apps.gateway import ready, relay
from apps.gateway.admission import aabandon, aadmit
from apps.gateway.catalog import load_snapshot
from apps.gateway.slots import slots_close
from apps.gateway.tests.test_slots import make_setup
from apps.gateway.tokens import PromptSize
from apps.keys import auth
from apps.keys.services import api_key_create
from apps.usage.credits import credits_for
from apps.usage.models import Hold, LedgerEntry

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="ready holds are PostgreSQL's"),
]

LONG = PromptSize(text_bytes=4000, messages=1)
SHORT = PromptSize(text_bytes=20, messages=1)
PRICES = {"prompt_price": Decimal("0.5"), "completion_price": Decimal("1.5")}  # chat-small


@pytest.fixture
def setup(settings):
    auth._recent.clear()
    yield make_setup("redis", settings)
    auth._recent.clear()


CATALOG = []  # the catalog snapshot, loaded outside the event loop (it reads the database)


@pytest.fixture
def bob_key(world):
    CATALOG[:] = [load_snapshot()]
    return api_key_create(grant=world.grant, owner=world.bob, name="ready-limits")


def admit(secret: str, prompt: PromptSize, max_tokens: int):
    return aadmit(
        secret=secret, catalog=CATALOG[0], endpoint="chat", model_name="chat-small",
        prompt=prompt, max_tokens=max_tokens,
    )  # fmt: skip


async def served_from_a_larger_ready_hold(secret: str):
    """A long request, then a short one, which takes the ready hold placed for the long one."""
    await aabandon(await admit(secret, LONG, 100))
    await asyncio.sleep(0.3)  # the ready hold is placed
    admitted = await admit(secret, SHORT, 16)
    assert admitted.hold.prompt_tokens == LONG.upper_bound  # the ready hold, not its own
    assert admitted.max_tokens == 16
    return admitted


def run(scenario):
    async def main():
        try:
            return await scenario()
        finally:
            await ready.release_ready_holds()
            await asyncio.sleep(0.2)  # a slot release started in the background has finished
            await slots_close()

    return asyncio.run(main())


@pytest.mark.parametrize("after_answer", [True, False])
def test_a_request_served_from_a_larger_ready_hold_costs_no_more_than_its_own_hold(
    setup, bob_key, after_answer
):
    # The backend counts more prompt tokens than the short prompt's upper bound (an image, a
    # chat template's own text): with its own hold the request pays at most that hold.
    _, secret = bob_key
    own_most = credits_for(prompt_tokens=SHORT.upper_bound, completion_tokens=16, **PRICES)

    async def scenario():
        admitted = await served_from_a_larger_ready_hold(secret)
        tally = relay.Tally(
            admission=admitted, started=time.monotonic(), prompt_tokens=2000, completion_tokens=16
        )
        await admitted.slot.__aexit__(None, None, None)
        if after_answer:  # a non-streaming answer's headers, then its settlement
            await relay.settle_after_answer(tally)
            return tally.charged
        return await relay.settle(tally)  # a stream's settlement

    charged = run(scenario)

    entry = LedgerEntry.objects.order_by("pk").last()
    assert credits_for(prompt_tokens=2000, completion_tokens=16, **PRICES) > own_most
    assert entry.credits == own_most
    assert entry.capped
    assert Decimal(charged["credits_charged"]) == entry.credits
    assert not Hold.objects.exists()


def test_a_graceful_shutdown_waits_for_a_ready_hold_withdrawal_already_started(
    setup, bob_key, settings, monkeypatch
):
    settings.GATEWAY_READY_HOLD_SECONDS = 1
    _, secret = bob_key
    real = ready.ahold_withdraw

    async def slow_withdraw(**args):
        await asyncio.sleep(0.5)
        return await real(**args)

    monkeypatch.setattr(ready, "ahold_withdraw", slow_withdraw)

    async def scenario():
        await aabandon(await admit(secret, SHORT, 16))
        registry = ready.ready_holds()
        assert registry.entries  # its key's next hold, on its way
        deadline = time.monotonic() + 3
        while registry.entries:  # idle for a second: its withdrawal starts
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await ready.release_ready_holds()  # the lifespan's shutdown, the withdrawal under way

    async def main():
        try:
            await scenario()
        finally:
            await slots_close()

    asyncio.run(main())  # the loop ends right after the lifespan's shutdown

    assert not Hold.objects.exists()
    assert LedgerEntry.objects.count() == 1  # the request's own; none for the ready hold


def test_a_ready_hold_outlives_its_wait_and_then_the_longest_request(setup, bob_key, settings):
    # A request taken up to GATEWAY_READY_HOLD_SECONDS after its hold was placed may still
    # run GATEWAY_REQUEST_MAX_SECONDS from then: the hold may not expire under it (the sweeper
    # would release it at no charge while the request runs).
    settings.GATEWAY_READY_HOLD_SECONDS = 600
    _, secret = bob_key

    async def scenario():
        await aabandon(await admit(secret, SHORT, 16))
        await asyncio.sleep(0.3)  # the ready hold is placed
        rows = Hold.objects.values_list("created", "expires_at")
        return await sync_to_async(list, thread_sensitive=False)(rows)

    ((created, expires_at),) = run(scenario)
    longest = settings.GATEWAY_READY_HOLD_SECONDS + settings.GATEWAY_REQUEST_MAX_SECONDS
    assert expires_at - created > dt.timedelta(seconds=longest)
