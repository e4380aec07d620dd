"""A model serves at most max_concurrency requests at once; queue_size more wait; the rest
hear 503 at once."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx
import openai
import pytest
from asgiref.sync import async_to_sync

from apps.gateway.slots import slot_stats
from apps.keys.models import ApiKey
from apps.keys.services import api_key_change_limits, api_key_create
from apps.usage.models import Hold, LedgerEntry, Outcome
from devbackend.testing import devbackend_stats, devbackend_stats_reset
from tests.waiting import aeventually, eventually
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)


async def post(client, gateway, model: str) -> tuple[int, float, httpx.Headers]:
    started = time.monotonic()
    response = await client.post(
        f"{gateway.url}/chat/completions",
        headers={"Authorization": f"Bearer {gateway.secret}"},
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
    )
    return response.status_code, time.monotonic() - started, response.headers


async def until_served(model: str) -> None:
    """Wait until a request of ``model`` holds one of its slots."""

    async def serving() -> bool:
        return (await slot_stats(model))["in_flight"] > 0

    await aeventually(serving, what=f"a request of {model!r} holding a slot")


async def six_at_once(gateway, model: str):
    async with httpx.AsyncClient(timeout=30) as client:
        tasks = [asyncio.create_task(post(client, gateway, model)) for _ in range(6)]

        # Both states last while the first two are served (1 s at the backend); no other
        # state of a correct gateway matches them, however late the requests arrive.
        async def two_served_three_queued() -> dict[str, int]:
            stats = await slot_stats(model)
            assert stats == {"in_flight": 2, "queued": 3}, stats
            return stats

        async def two_at_the_backend() -> dict[str, int] | bool:
            stats = await asyncio.to_thread(devbackend_stats, gateway.backend_url)
            return stats["in_flight"] >= 2 and stats

        during = await aeventually(two_served_three_queued, what="two served, three queued")
        # a slot is taken a moment before its request reaches the backend
        backend = await aeventually(two_at_the_backend, what="two requests at the backend")
        return during, backend, await asyncio.gather(*tasks)


def test_it_serves_two_queues_three_and_refuses_one(gateway):
    gateway.add_model(
        "tiny", upstream="chat-small@latency-ms=1000", max_concurrency=2, queue_size=3
    )
    devbackend_stats_reset(gateway.backend_url)
    during, backend, results = asyncio.run(six_at_once(gateway, "tiny"))

    assert during == {"in_flight": 2, "queued": 3}
    assert backend["in_flight"] == 2
    refused = [r for r in results if r[0] == 503]
    assert len(refused) == 1
    _, elapsed, headers = refused[0]
    # at once: well before even the first served request (1 s at the backend) could end
    assert elapsed < 0.9 and int(headers["retry-after"]) >= 1
    assert sorted(r[0] for r in results) == [200] * 5 + [503]
    assert devbackend_stats(gateway.backend_url)["max_in_flight"] == 2
    # the refused request's hold was released at no charge, with a row saying so
    wait_for_settlements()
    assert not Hold.objects.exists()
    rows = sorted(LedgerEntry.objects.values_list("outcome", "credits"))
    assert [outcome for outcome, _ in rows] == [Outcome.CANCELLED] + [Outcome.OK] * 5
    assert rows[0][1] == 0 and all(credits > 0 for _, credits in rows[1:])
    assert ApiKey.objects.get(pk=gateway.key.pk).credits_held == 0


def test_a_refused_hold_gives_the_slot_back_and_a_full_queue_gives_the_hold_back(gateway):
    # The hold and the slot are taken at the same time; whichever fails, the other is undone.
    gateway.add_model(
        "single", upstream="chat-small@latency-ms=800", max_concurrency=1, queue_size=0
    )
    poor = api_key_create(grant=gateway.world.grant, owner=gateway.world.bob, name="poor")
    api_key_change_limits(key=poor[0], monthly_limit=None, total_limit=Decimal("0.000001"))
    hello = [{"role": "user", "content": "Hi"}]

    for _ in range(3):  # refused by its budget: 429, and the only slot is not kept
        with pytest.raises(openai.RateLimitError) as info:
            gateway.client(secret=poor[1]).chat.completions.create(
                model="single", messages=hello, max_tokens=4
            )
        assert info.value.body["code"] == "insufficient_quota"
    assert async_to_sync(slot_stats)("single") == {"in_flight": 0, "queued": 0}

    async def busy_then_one_more():
        async with httpx.AsyncClient(timeout=30) as client:
            first = asyncio.create_task(post(client, gateway, "single"))
            await until_served("single")
            second = await post(client, gateway, "single")  # the queue holds nobody: 503
            return await first, second

    first, second = asyncio.run(busy_then_one_more())
    assert (first[0], second[0]) == (200, 503)
    wait_for_settlements()
    assert not Hold.objects.exists()
    key = ApiKey.objects.get(pk=gateway.key.pk)
    assert key.credits_held == 0
    assert key.credits_used == LedgerEntry.objects.get(outcome=Outcome.OK).credits
    assert LedgerEntry.objects.get(outcome=Outcome.CANCELLED).credits == 0
    assert async_to_sync(slot_stats)("single") == {"in_flight": 0, "queued": 0}


def test_it_gives_slots_back_after_failures_and_disconnects(gateway):
    gateway.add_model(
        "fragile", upstream="chat-small@fault=error-500", max_concurrency=1, queue_size=0
    )
    gateway.add_model(
        "slowpoke", upstream="chat-small@latency-ms=2000", max_concurrency=1, queue_size=0
    )
    client = gateway.client(timeout=0.3)
    for _ in range(3):  # a failed request must not keep the only slot
        with pytest.raises(Exception):  # noqa: B017
            client.chat.completions.create(
                model="fragile", messages=[{"role": "user", "content": "x"}]
            )
    for _ in range(2):  # a client that gives up must not keep it either
        with pytest.raises(Exception):  # noqa: B017
            client.chat.completions.create(
                model="slowpoke", messages=[{"role": "user", "content": "x"}]
            )
    eventually(
        lambda: async_to_sync(slot_stats)("slowpoke")["in_flight"] == 0,
        what="the slot of the client that gave up given back",
    )
    assert async_to_sync(slot_stats)("slowpoke") == {"in_flight": 0, "queued": 0}
    assert async_to_sync(slot_stats)("fragile") == {"in_flight": 0, "queued": 0}


def test_a_client_that_leaves_the_queue_frees_its_place_and_its_hold(gateway):
    gateway.add_model(
        "queued", upstream="chat-small@latency-ms=1500", max_concurrency=1, queue_size=2
    )

    async def one_served_one_leaving():
        async with httpx.AsyncClient(timeout=30) as client:
            served = asyncio.create_task(post(client, gateway, "queued"))
            await until_served("queued")
            async with httpx.AsyncClient(timeout=0.4) as impatient:
                with pytest.raises(httpx.ReadTimeout):
                    await post(impatient, gateway, "queued")

            async def queue_empty() -> bool:
                return (await slot_stats("queued"))["queued"] == 0

            await aeventually(queue_empty, timeout=1, what="the impatient client out of the queue")
            while_served = await slot_stats("queued")
            return while_served, await served

    while_served, served = asyncio.run(one_served_one_leaving())
    assert while_served == {"in_flight": 1, "queued": 0}  # it left the queue at once
    assert served[0] == 200
    wait_for_settlements()
    assert not Hold.objects.exists()
    rows = dict(LedgerEntry.objects.values_list("outcome", "credits"))
    assert set(rows) == {Outcome.OK, Outcome.CLIENT_DISCONNECTED}
    assert rows[Outcome.CLIENT_DISCONNECTED] == 0
    assert ApiKey.objects.get(pk=gateway.key.pk).credits_held == 0
    assert async_to_sync(slot_stats)("queued") == {"in_flight": 0, "queued": 0}


def test_a_request_waits_in_the_queue_no_longer_than_a_request_may_take(gateway, settings):
    # The hold lives GATEWAY_REQUEST_MAX_SECONDS + a margin from before the queue: waiting
    # longer than a request may take in all is answered 503, the hold released at no charge.
    from apps.gateway.slots import model_slot

    settings.GATEWAY_REQUEST_MAX_SECONDS = 1
    gateway.add_model("full", upstream="chat-small", max_concurrency=1, queue_size=5)

    async def while_someone_holds_the_slot():
        async with model_slot(model="full", max_concurrency=1, queue_size=5):
            async with httpx.AsyncClient(timeout=30) as client:
                started = time.monotonic()
                status, _, headers = await post(client, gateway, "full")
                return status, time.monotonic() - started, headers

    status, waited, headers = asyncio.run(while_someone_holds_the_slot())
    assert status == 503 and int(headers["retry-after"]) >= 1
    assert 0.9 < waited < 5
    wait_for_settlements()
    assert not Hold.objects.exists()
    assert list(LedgerEntry.objects.values_list("outcome", "credits")) == [(Outcome.CANCELLED, 0)]
    assert async_to_sync(slot_stats)("full") == {"in_flight": 0, "queued": 0}


def test_the_time_in_the_queue_counts_toward_the_request_deadline(gateway, settings):
    from apps.gateway.slots import model_slot

    settings.GATEWAY_REQUEST_MAX_SECONDS = 1
    gateway.add_model("late", upstream="chat-small@latency-ms=700", max_concurrency=1, queue_size=5)

    async def queued_then_slow():
        async with httpx.AsyncClient(timeout=30) as client:
            async with model_slot(model="late", max_concurrency=1, queue_size=5):
                request = asyncio.create_task(post(client, gateway, "late"))

                async def queued() -> bool:
                    return (await slot_stats("late"))["queued"] == 1

                await aeventually(queued, what="the request queued behind the held slot")
                await asyncio.sleep(0.6)  # what is tested: 0.6 s more in the queue
            return await request

    status, _, _ = asyncio.run(queued_then_slow())
    assert status == 504  # 0.6 s queued + 0.7 s at the backend > 1 s in all
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert entry.outcome == Outcome.BACKEND_TIMEOUT and entry.latency_ms >= 900
    assert not Hold.objects.exists()
