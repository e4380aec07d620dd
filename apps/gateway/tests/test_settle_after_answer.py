"""A request's answer is sent while its settlement is written (the settlement's round trip is
not in the client's latency): its credit headers come from the budgets the hold read, and they
say what the ledger row then says. A graceful shutdown waits for the settlements still being
written (``ledger.adrain``, from the ASGI lifespan)."""

from __future__ import annotations

import asyncio
import logging
import threading
from decimal import Decimal

import httpx
import pytest

from apps.usage import ledger, pg
from apps.usage.models import Hold, LedgerEntry
from tests.waiting import eventually
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)

MARKER = "zebra-settle-after-answer-7731"
HELLO = [{"role": "user", "content": f"Hello {MARKER}"}]


def chat(gateway) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/chat/completions",
        headers={"authorization": f"Bearer {gateway.secret}"},
        json={"model": "chat-small", "messages": HELLO, "max_tokens": 6},
        timeout=10,
    )


def test_the_answer_does_not_wait_for_the_settlement_and_tells_what_it_charges(
    gateway, monkeypatch
):
    release = threading.Event()
    real_settle = pg._settle_all

    async def slow_settle(items):
        await asyncio.to_thread(release.wait, 10)
        return await real_settle(items)

    monkeypatch.setattr(pg, "_settle_all", slow_settle)

    answer = chat(gateway)

    assert answer.status_code == 200  # while the settlement still waits
    assert Hold.objects.count() == 1
    assert not LedgerEntry.objects.exists()
    release.set()
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    usage = answer.json()["usage"]
    assert (entry.prompt_tokens, entry.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert Decimal(answer.headers["x-anvil-credits-charged"]) == entry.credits > 0
    assert answer.headers["x-anvil-limited-by"] == "grant"
    assert Decimal(answer.headers["x-anvil-credits-remaining"]) == Decimal(1000) - entry.credits
    gateway.world.grant.refresh_from_db()
    assert gateway.world.grant.credits_used == entry.credits
    assert gateway.world.grant.credits_held == 0


def test_a_settlement_that_fails_after_the_answer_is_logged_and_left_to_the_sweeper(
    gateway, monkeypatch, caplog
):
    async def broken_settle(items):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(pg, "_settle_all", broken_settle)

    with caplog.at_level(logging.ERROR, logger="apps.usage.ledger"):
        answer = chat(gateway)
        eventually(lambda: "A settlement failed" in caplog.text, what="the failure logged")

    assert answer.status_code == 200
    Hold.objects.get()  # withdrawn by the sweeper once it expires: nothing charged
    assert MARKER not in caplog.text
    assert not LedgerEntry.objects.exists()


def test_a_graceful_shutdown_waits_for_the_settlements_being_written(world, monkeypatch):
    from apps.keys.services import api_key_create

    key, _ = api_key_create(grant=world.grant, owner=world.bob, name="draining")
    writing, written = asyncio.Event(), asyncio.Event()
    real_settle = pg._settle_all

    async def slow_settle(items):
        writing.set()
        await written.wait()
        return await real_settle(items)

    monkeypatch.setattr(pg, "_settle_all", slow_settle)
    plan = ledger.Plan(
        api_key_id=key.id, grant_id=key.grant_id, user_id=key.owner_id,
        model=world.chat_model, prompt_tokens=10, max_completion_tokens=10,
    )  # fmt: skip

    async def shutdown():
        hold = await ledger.aplace(plan)
        ledger.asettle(hold, ledger.Usage(10, 10))
        draining = asyncio.ensure_future(ledger.adrain())
        await writing.wait()  # the drain has started meanwhile (it was scheduled first)
        assert not draining.done()  # waiting for the settlement
        written.set()
        await asyncio.wait_for(draining, 5)

    asyncio.run(shutdown())
    assert LedgerEntry.objects.count() == 1
    assert not Hold.objects.exists()
