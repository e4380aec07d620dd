"""A successful non-streaming answer is sent before its settlement runs (issue 4: the
settlement's round trip is not in the client's latency): its credit headers come from the
hold, and they say what the ledger row then says. The request ends only when its settlement
has (so a graceful shutdown, which waits for requests, does not cut settlements off)."""

from __future__ import annotations

import asyncio
import logging
import threading
from decimal import Decimal

import httpx
import pytest
from django.http import HttpResponse

from apps.gateway import handler as handler_module
from apps.gateway import relay
from apps.usage.models import Hold, LedgerEntry
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
    gateway, monkeypatch, settings
):
    settings.GATEWAY_READY_HOLDS = False  # the request's own hold is the only one
    release = threading.Event()
    real_settle = relay.ahold_settle

    async def slow_settle(**args):
        await asyncio.to_thread(release.wait, 10)
        return await real_settle(**args)

    monkeypatch.setattr(relay, "ahold_settle", slow_settle)

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
    gateway, monkeypatch, caplog, settings
):
    settings.GATEWAY_READY_HOLDS = False  # the request's own hold is the only one

    async def broken_settle(**args):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(relay, "ahold_settle", broken_settle)

    with caplog.at_level(logging.ERROR, logger="apps.gateway.relay"):
        answer = chat(gateway)
        for _ in range(200):
            if "after its answer failed" in caplog.text:
                break
            threading.Event().wait(0.01)

    assert answer.status_code == 200
    hold = Hold.objects.get()  # the sweeper releases it once it expires, at no charge
    assert f"settling hold {hold.pk} after its answer failed" in caplog.text
    assert MARKER not in caplog.text
    assert not LedgerEntry.objects.exists()


def test_the_request_ends_when_its_settlement_does(monkeypatch):
    """The handler sends the whole answer, then waits for the settlement it carries."""
    settled = asyncio.Event()
    sent: list[dict] = []

    async def view(request):
        response = HttpResponse(b"{}", content_type="application/json")

        async def settlement():
            await settled.wait()

        response.settling = asyncio.ensure_future(settlement())
        return response

    monkeypatch.setattr(handler_module, "_VIEWS", {"/api/v1/chat/completions": view})
    scope = {
        "type": "http", "method": "POST", "path": "/api/v1/chat/completions",
        "raw_path": b"/api/v1/chat/completions", "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")], "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000), "scheme": "http", "http_version": "1.1",
    }  # fmt: skip
    messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays

    async def send(message):
        sent.append(message)

    async def run() -> None:
        serving = asyncio.ensure_future(handler_module.GatewayHandler()(scope, receive, send))
        for _ in range(50):
            await asyncio.sleep(0)
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        assert not serving.done()  # answered, still settling
        settled.set()
        await asyncio.wait_for(serving, 2)

    asyncio.run(run())
