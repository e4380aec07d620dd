"""Per-model concurrency slots, against both implementations: Redis (a unique key prefix per
test on the test Redis) and in-process. The crash and cross-process tests need Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from apps.gateway.slots import (
    QueueFull,
    model_slot,
    slot_backend,
    slot_stats,
    slots_close,
    slots_reset,
)
from lib import resp
from lib.slots_redis import _SCRIPTS
from tests.waiting import aeventually

ROOT = Path(__file__).resolve().parents[3]
LEASE = 1.5  # seconds; short so a crashed holder's slot comes back quickly


@dataclass
class Setup:
    kind: str
    model: str
    url: str | None = None
    prefix: str | None = None


def make_setup(kind: str, settings) -> Setup:
    setup = Setup(kind=kind, model=f"model-{uuid.uuid4().hex[:10]}")
    if kind == "local":
        settings.REDIS_URL = None
        return setup
    if not settings.REDIS_URL:
        pytest.fail("the Redis variant needs REDIS_URL (tests run against a real Redis)")
    setup.url, setup.prefix = settings.REDIS_URL, f"test-slots-{uuid.uuid4().hex[:10]}"
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": setup.prefix}}
    settings.GATEWAY_SLOT_LEASE_SECONDS = LEASE
    return setup


def forget(setup: Setup) -> None:
    if setup.kind == "local":
        asyncio.run(slots_reset(setup.model))
        return
    client = redis.Redis.from_url(setup.url)
    for key in client.scan_iter(match=f"{setup.prefix}:*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["local", "redis"])
def backend(request, settings):
    setup = make_setup(request.param, settings)
    yield setup
    forget(setup)


@pytest.fixture
def redis_backend(settings):
    """Crashes and other processes only matter when the slots live in Redis."""
    setup = make_setup("redis", settings)
    yield setup
    forget(setup)


def run(scenario):
    async def main():
        try:
            async with asyncio.timeout(30):  # a scenario that hangs fails instead
                return await scenario()
        finally:
            await slots_close()

    return asyncio.run(main())


def slot(setup: Setup, *, max_concurrency=1, queue_size=10, grant="g"):
    return model_slot(
        model=setup.model, max_concurrency=max_concurrency, queue_size=queue_size, grant_id=grant
    )


async def until_slots(setup: Setup, in_flight: int, queued: int, *, what: str, timeout=3.0):
    """Wait until the model has ``in_flight`` slots held and ``queued`` requests waiting."""
    awaited = {"in_flight": in_flight, "queued": queued}

    async def check():
        stats = await slot_stats(setup.model)
        assert stats == awaited, f"{what}: the slots show {stats}, awaited {awaited}"

    await aeventually(check, timeout=timeout, what=what)


def test_it_admits_two_queues_three_and_refuses_the_sixth_at_once(backend):
    async def scenario():
        current, peak, refusals, release = 0, 0, [], asyncio.Event()

        async def request(index):
            nonlocal current, peak
            started = time.monotonic()
            try:
                async with slot(backend, max_concurrency=2, queue_size=3):
                    current += 1
                    peak = max(peak, current)
                    await release.wait()
                    current -= 1
            except QueueFull as exc:
                refusals.append((time.monotonic() - started, exc.retry_after))

        await slot_stats(backend.model)  # connect first: only the queue decision is timed
        tasks = [asyncio.create_task(request(i)) for i in range(6)]
        await until_slots(backend, 2, 3, what="two admitted and three queued")
        await aeventually(lambda: len(refusals) == 1, what="the sixth request refused")
        release.set()  # only now does a slot free: the refusal did not wait for one
        await asyncio.gather(*tasks)
        return peak, refusals, await slot_stats(backend.model)

    peak, refusals, after = run(scenario)
    assert peak == 2
    [(waited, retry_after)] = refusals
    assert waited < 0.2
    assert retry_after >= 1
    assert after == {"in_flight": 0, "queued": 0}


def test_it_serves_waiters_in_arrival_order(backend):
    async def scenario():
        order, release = [], asyncio.Event()

        async def request(name):
            async with slot(backend):
                order.append(name)
                await release.wait()

        first = asyncio.create_task(request("holder"))
        await until_slots(backend, 1, 0, what="the holder admitted")
        tasks = []
        for index in range(4):
            tasks.append(asyncio.create_task(request(index)))
            await until_slots(backend, 1, index + 1, what=f"waiter {index} queued")
        release.set()
        await asyncio.gather(first, *tasks)
        return order

    assert run(scenario) == ["holder", 0, 1, 2, 3]


def test_it_takes_turns_between_grants_and_keeps_order_within_a_grant(backend):
    async def scenario():
        order, release = [], asyncio.Event()

        async def request(grant, name):
            async with slot(backend, grant=grant):
                order.append(name)
                await release.wait()

        first = asyncio.create_task(request("z", "holder"))
        await until_slots(backend, 1, 0, what="the holder admitted")
        arrivals = [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("b", "b2"), ("c", "c1")]
        tasks = []
        for index, (grant, name) in enumerate(arrivals):
            tasks.append(asyncio.create_task(request(grant, name)))
            await until_slots(backend, 1, index + 1, what=f"{name} queued")
        release.set()
        await asyncio.gather(first, *tasks)
        return order

    assert run(scenario) == ["holder", "a1", "b1", "c1", "a2", "b2", "a3"]


def test_it_gives_a_cancelled_waiters_place_to_the_next_request(backend):
    async def scenario():
        release = asyncio.Event()
        admitted = []

        async def request(name):
            async with slot(backend, queue_size=1):
                admitted.append(name)
                await release.wait()

        holder = asyncio.create_task(request("holder"))
        await until_slots(backend, 1, 0, what="the holder admitted")
        leaver = asyncio.create_task(request("leaver"))
        await until_slots(backend, 1, 1, what="the leaver queued")
        with pytest.raises(QueueFull):
            await request("refused")
        leaver.cancel()
        await asyncio.gather(leaver, return_exceptions=True)
        queued_after_cancel = await slot_stats(backend.model)
        latecomer = asyncio.create_task(request("latecomer"))
        await until_slots(backend, 1, 1, what="the latecomer queued in the leaver's place")
        release.set()
        await asyncio.gather(holder, latecomer)
        return queued_after_cancel, admitted, await slot_stats(backend.model)

    queued_after_cancel, admitted, after = run(scenario)
    assert queued_after_cancel == {"in_flight": 1, "queued": 0}
    assert admitted == ["holder", "latecomer"]
    assert after == {"in_flight": 0, "queued": 0}


def test_it_releases_the_slot_when_the_holder_fails_or_is_cancelled(backend):
    async def scenario():
        with pytest.raises(ZeroDivisionError):
            async with slot(backend):
                1 / 0  # noqa: B018
        after_error = await slot_stats(backend.model)

        async def stuck():
            async with slot(backend):
                await asyncio.Event().wait()  # until cancelled

        holder = asyncio.create_task(stuck())
        await until_slots(backend, 1, 0, what="the holder admitted")
        waiter = asyncio.create_task(stuck())
        await until_slots(backend, 1, 1, what="the waiter queued")
        holder.cancel()
        await until_slots(backend, 1, 0, what="the waiter given the cancelled holder's slot")
        waiter.cancel()
        await asyncio.gather(holder, waiter, return_exceptions=True)
        return after_error, await slot_stats(backend.model)

    after_error, after_cancel = run(scenario)
    assert after_error == {"in_flight": 0, "queued": 0}
    assert after_cancel == {"in_flight": 0, "queued": 0}


def test_it_returns_a_slot_handed_to_a_waiter_that_is_cancelled_before_it_runs(backend):
    async def scenario():
        async def wait_for_slot():
            async with slot(backend):
                pass

        holder = slot(backend)
        await holder.__aenter__()
        waiter = asyncio.create_task(wait_for_slot())
        await until_slots(backend, 1, 1, what="the waiter queued")
        await holder.__aexit__(None, None, None)  # hands the slot to the waiter...
        waiter.cancel()  # ...which is cancelled before it could use it
        await asyncio.gather(waiter, return_exceptions=True)
        await until_slots(backend, 0, 0, what="the handed-over slot returned", timeout=0.5)
        return waiter.cancelled()

    assert run(scenario) is True


def test_it_returns_a_slot_redis_hands_over_while_the_waiter_is_cancelled(redis_backend):
    async def scenario():
        async def wait_for_slot():
            async with slot(redis_backend):
                pass

        holder = slot(redis_backend)
        await holder.__aenter__()
        waiter = asyncio.create_task(wait_for_slot())
        await until_slots(redis_backend, 1, 1, what="the waiter queued")
        # Another process releases the holder's slot while this loop is busy: Redis hands it
        # to the waiter and publishes the wake-up, which this loop has not read yet...
        keys = slot_backend().keys(redis_backend.model)
        client = redis.Redis.from_url(redis_backend.url)
        token, holder._ticket = holder._ticket.token, None
        client.eval(_SCRIPTS["leave"], len(keys.keys), *keys.keys, *keys.args, token)
        handed_over = client.zrange(keys.keys[0], 0, -1) not in ([], [token.encode()])
        client.close()
        waiter.cancel()  # ...when the waiter is cancelled.
        await asyncio.gather(waiter, return_exceptions=True)
        what = "the slot handed to the cancelled waiter returned"
        await until_slots(redis_backend, 0, 0, what=what, timeout=0.5)
        return handed_over

    assert run(scenario) is True


def test_it_undoes_an_acquire_cancelled_during_its_round_trip(redis_backend):
    async def scenario():
        await slot_stats(redis_backend.model)  # connected: the next acquire starts at once

        async def use_slot():
            async with slot(redis_backend):
                await asyncio.Event().wait()  # until cancelled

        task = asyncio.create_task(use_slot())
        await asyncio.sleep(0)  # the acquire script is on its way to Redis
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # Well before the 1.5 s lease could expire:
        await until_slots(redis_backend, 0, 0, what="the cancelled acquire undone", timeout=0.5)

    run(scenario)


def test_it_wakes_a_waiter_as_soon_as_a_slot_frees(backend, settings):
    settings.GATEWAY_SLOT_LEASE_SECONDS = 30  # heartbeat polls every 1 s: waking must be pushed

    async def scenario():
        freed_at, admitted_at = 0.0, 0.0
        release = asyncio.Event()

        async def holder():
            nonlocal freed_at
            async with slot(backend):
                await release.wait()
            freed_at = time.monotonic()

        async def waiter():
            nonlocal admitted_at
            async with slot(backend):
                admitted_at = time.monotonic()

        tasks = [asyncio.create_task(holder())]
        await until_slots(backend, 1, 0, what="the holder admitted")
        tasks.append(asyncio.create_task(waiter()))
        await until_slots(backend, 1, 1, what="the waiter queued")
        release.set()
        await asyncio.gather(*tasks)
        return admitted_at - freed_at

    assert run(scenario) < 0.3


def test_it_applies_a_changed_max_concurrency_on_the_next_request(backend):
    async def scenario():
        release = asyncio.Event()

        async def request(limit):
            async with slot(backend, max_concurrency=limit):
                await release.wait()

        tasks = [asyncio.create_task(request(1))]
        await until_slots(backend, 1, 0, what="the first request admitted")
        tasks.append(asyncio.create_task(request(1)))
        await until_slots(backend, 1, 1, what="the second queued at a limit of 1")
        tasks.append(asyncio.create_task(request(3)))  # raised: the waiter and it get in
        await until_slots(backend, 3, 0, what="the limit raised to 3 admitting both")
        tasks.append(asyncio.create_task(request(2)))  # lowered: it waits
        await until_slots(backend, 3, 1, what="the limit lowered to 2 queuing the fourth")
        release.set()
        await asyncio.gather(*tasks)
        return await slot_stats(backend.model)

    assert run(scenario) == {"in_flight": 0, "queued": 0}


def test_it_takes_and_returns_a_free_slot_in_one_round_trip_each(redis_backend, monkeypatch):
    commands = []
    original = resp.Client.execute

    async def counting(self, *args, **options):
        commands.append(args[0])
        return await original(self, *args, **options)

    async def scenario():
        async with slot(redis_backend):  # the first use connects and loads the scripts
            pass
        monkeypatch.setattr(resp.Client, "execute", counting)
        async with slot(redis_backend):
            after_acquire = list(commands)
        return after_acquire, commands

    after_acquire, commands = run(scenario)
    assert after_acquire == ["EVALSHA"]
    assert commands == ["EVALSHA", "EVALSHA"]


def test_it_shares_the_limit_between_event_loops_of_one_process(backend):
    lock, counts, finished, errors = threading.Lock(), {"now": 0, "peak": 0}, [], []

    async def crowd():
        async def one():
            async with slot(backend, max_concurrency=2, queue_size=100):
                with lock:
                    counts["now"] += 1
                    counts["peak"] = max(counts["peak"], counts["now"])
                await asyncio.sleep(0.02)  # the slot held a while: the two loops contend
                with lock:
                    counts["now"] -= 1
            finished.append(1)

        await asyncio.gather(*(one() for _ in range(10)))

    def thread_main():
        try:
            run(crowd)
        except Exception as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=thread_main) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(finished) == 20
    assert counts["peak"] == 2


CHILD = """
import asyncio, sys
import redis.asyncio as aioredis
from lib.slots_redis import RedisSlots

url, prefix, model, mode, lease = sys.argv[1:6]
slots = RedisSlots(url=url, prefix=prefix, lease_seconds=float(lease))


async def crash():
    await slots.acquire(model=model, grant="child", max_concurrency=1, queue_size=5)
    print("held", flush=True)
    await asyncio.Event().wait()  # until the test kills this process


async def crowd():
    r = aioredis.Redis.from_url(url)

    async def one():
        ticket = await slots.acquire(model=model, grant=mode, max_concurrency=3, queue_size=100)
        try:
            await r.rpush(prefix + ":seen", await r.incr(prefix + ":current"))
            await asyncio.sleep(0.05)  # the slot held a while: the processes contend
            await r.decr(prefix + ":current")
        finally:
            await slots.release(ticket)

    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "go", sent to every child at once
    await asyncio.gather(*(one() for _ in range(10)))
    await slots.close()
    await r.aclose()
    print("done", flush=True)


asyncio.run(crash() if mode == "crash" else crowd())
"""


def child(setup: Setup, mode: str) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603  (our own interpreter and fixed code)
        [sys.executable, "-c", CHILD, setup.url, setup.prefix, setup.model, mode, str(LEASE)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_it_frees_a_crashed_process_slot_when_its_lease_expires(redis_backend):
    process = child(redis_backend, "crash")
    try:
        assert process.stdout.readline().strip() == "held"

        async def scenario():
            admitted_at = 0.0

            async def waiter():
                nonlocal admitted_at
                async with slot(redis_backend):
                    admitted_at = time.monotonic()

            task = asyncio.create_task(waiter())
            await until_slots(redis_backend, 1, 1, what="a waiter behind the crashing holder")
            process.kill()
            process.wait()
            killed_at = time.monotonic()
            await asyncio.wait_for(task, LEASE + 3)
            return admitted_at - killed_at, await slot_stats(redis_backend.model)

        waited, after = run(scenario)
    finally:
        process.kill()
        process.wait()
        process.stdin.close()
        process.stdout.close()
    assert 0.3 < waited < LEASE + 1.5  # held until the lease ran out, then handed on
    assert after == {"in_flight": 0, "queued": 0}


def test_it_keeps_the_limit_across_processes(redis_backend):
    processes = [child(redis_backend, "one"), child(redis_backend, "two")]
    client = redis.Redis.from_url(redis_backend.url)
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready"
        for process in processes:  # both start at once
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=30)[0].strip() for process in processes]
        seen = [int(value) for value in client.lrange(f"{redis_backend.prefix}:seen", 0, -1)]
    finally:
        for process in processes:
            process.kill()
            process.wait()
            process.stdin.close()
            process.stdout.close()
        client.close()
    assert outputs == ["done", "done"]
    assert len(seen) == 20
    assert max(seen) == 3
