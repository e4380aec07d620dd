"""The gateway's client to the backends (apps.gateway.backend_http) against aiohttp, which it
replaced, on the development backend.

    .venv/bin/python -m bench.backend_client [--requests 2000] [--streams 50] [--rounds 2]

Starts the development backend (its own process, loopback), then in this process, on uvloop
like Anvil, measures each client the way the relay uses it: non-streaming chat POSTs
(max_tokens 16) read whole at concurrency 1 and 16, and 200-token streams read line by line.
Prints wall p50 per request and this process's CPU time (user + system) per request or per
stream; with ``--rounds`` > 1 the clients alternate and each figure is the best round. The
bench's own llhttp client (bench/client.py: no pool, no timeouts) is a floor for comparison.
aiohttp is a development requirement for this comparison only; without it, it is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

if __package__ in (None, ""):  # run as a file: python bench/backend_client.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.gateway.backend_http import BackendClient
from bench.client import Target, connect
from bench.gateway import machine_speed_ms
from devbackend.testing import start_devbackend, stop_devbackend

PATH = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello there"}]
CHAT = json.dumps({"model": "chat-small", "messages": HELLO, "max_tokens": 16}).encode()
STREAM = json.dumps(
    {
        "model": "chat-small",
        "messages": HELLO,
        "max_tokens": 200,
        "ignore_eos": True,  # exactly 200 tokens, one event each
        "stream": True,
        "stream_options": {"include_usage": True},
    }
).encode()
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 300

Post = Callable[[bytes], Awaitable[int]]  # sends a body, reads the answer: lines read


def anvil_client(url: str) -> tuple[Post, Callable[[], Awaitable]]:
    client = BackendClient(max_connections=256, keepalive=4)

    async def post(body: bytes) -> int:
        async with await client.post(
            url,
            body=body,
            secret="",
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
        ) as response:
            if body is CHAT:
                await response.read()
                return 0
            return sum([1 async for _ in response.lines()])

    return post, client.close


def aiohttp_client(url: str) -> tuple[Post, Callable[[], Awaitable]]:
    """As apps/gateway/upstream.py used it until it was replaced."""
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=4, ttl_dns_cache=60),
        trust_env=False,
        timeout=None,
    )

    async def post(body: bytes) -> int:
        headers = {"content-type": "application/json", "accept": "application/json"}
        timeout = aiohttp.ClientTimeout(
            total=None, connect=READ_TIMEOUT, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
        )
        async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
            if body is CHAT:
                await response.read()
                return 0
            return sum([1 async for _ in response.content])

    return post, session.close


def bench_client(port: int) -> tuple[Post, Callable[[], Awaitable]]:
    """The benchmark's own client: one connection per concurrent request, made on first use."""
    target, free = Target("bench", port, PATH), []

    async def post(body: bytes) -> int:
        connection = free.pop() if free else await connect(port)
        await connection.send(target.request(body))
        free.append(connection)
        return 0

    async def close() -> None:
        for connection in free:
            connection.close()

    return post, close


async def posts(post: Post, *, concurrency: int, count: int) -> tuple[float, float]:
    """Wall p50 (ms) and CPU per request (ms) of ``count`` POSTs, ``concurrency`` at a time."""
    await asyncio.gather(*(post(CHAT) for _ in range(concurrency)))  # connections made
    latencies: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await post(CHAT)
            latencies.append(time.perf_counter() - started)

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu = time.process_time() - cpu
    return statistics.median(latencies) * 1000, cpu / count * 1000


async def streams(post: Post, *, count: int) -> tuple[float, float]:
    """Wall p50 (ms) and CPU (ms) per 200-token stream read line by line."""
    lines = await post(STREAM)
    assert lines > 400, lines  # two lines an event, 200 events and more
    walls = []
    cpu = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        await post(STREAM)
        walls.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu
    return statistics.median(walls) * 1000, cpu / count * 1000


async def measure(make, args, *, with_streams: bool) -> dict[str, tuple[float, float]]:
    post, close = make()
    try:
        for _ in range(2):  # warm-up
            await posts(post, concurrency=16, count=200)
        figures = {
            "c=1": await posts(post, concurrency=1, count=args.requests),
            "c=16": await posts(post, concurrency=16, count=args.requests * 2),
        }
        if args.streams and with_streams:
            await streams(post, count=3)
            figures["stream"] = await streams(post, count=args.streams)
        return figures
    finally:
        await close()


async def run(url: str, port: int, args) -> dict[str, dict[str, tuple[float, float]]]:
    makers = {"anvil": lambda: anvil_client(url + PATH)}
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        print("aiohttp is not installed: left out of the comparison")
    else:
        makers["aiohttp"] = lambda: aiohttp_client(url + PATH)
    makers["bench"] = lambda: bench_client(port)
    best: dict[str, dict[str, tuple[float, float]]] = {name: {} for name in makers}
    for _ in range(args.rounds):
        for name, make in makers.items():
            figures = await measure(make, args, with_streams=name != "bench")
            for scenario, (wall, cpu) in figures.items():
                old = best[name].get(scenario, (float("inf"), float("inf")))
                best[name][scenario] = (min(old[0], wall), min(old[1], cpu))
    return best


def report(best: dict[str, dict[str, tuple[float, float]]], args, machine_ms: float) -> None:
    print(
        f"\nA million Python additions take {machine_ms:.0f} ms (lower is faster). "
        f"{args.requests} POSTs at c=1 and {args.requests * 2} at c=16 (chat, max_tokens 16), "
        f"{args.streams} streams of 200 tokens; best of {args.rounds} rounds; uvloop.\n"
    )
    names = list(best)
    print(f"{'':30}" + "".join(f"{name:>12}" for name in names))
    rows = [
        ("c=1", 0, "POST c=1   wall p50 ms"),
        ("c=1", 1, "POST c=1   CPU ms/request"),
        ("c=16", 0, "POST c=16  wall p50 ms"),
        ("c=16", 1, "POST c=16  CPU ms/request"),
        ("stream", 0, "stream 200 wall p50 ms"),
        ("stream", 1, "stream 200 CPU ms/stream"),
    ]
    for scenario, index, label in rows:
        cells = []
        for name in names:
            figure = best[name].get(scenario)
            cells.append(f"{figure[index]:12.3f}" if figure else f"{'-':>12}")
        print(f"{label:30}" + "".join(cells))
    print(
        "\nbench = bench/client.py (no pool, no timeouts, no retry): the floor. Wall times "
        "include the development backend's own work; CPU is this process's only."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.backend_client")
    parser.add_argument("--requests", type=int, default=2000, help="POSTs at c=1 (x2 at c=16)")
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    machine_ms = machine_speed_ms()
    backend = start_devbackend()
    try:
        port = int(backend.url.rsplit(":", 1)[1])
        best = uvloop.run(run(backend.url, port, args))
    finally:
        stop_devbackend(backend.process)
    report(best, args, machine_ms)


if __name__ == "__main__":
    main()
