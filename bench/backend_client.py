"""The gateway's client to the backends (lib.backend_http) against aiohttp, which it
replaced, and httpx, on the development backend.

    .venv/bin/python -m bench.backend_client [--requests 2000] [--streams 50] [--rounds 3]

Starts the development backend (its own process, loopback), then in this process, on uvloop
like Anvil, measures each client the way the relay uses it: non-streaming chat POSTs
(max_tokens 16) read whole at concurrency 1 and 16, and 200-token streams read line by line.
Prints wall p50 per request and this process's CPU time (user + system) per request or per
stream, the wall p50 to a stream's first line, unpaced and paced at one token per ms as
``make bench``'s streams are (what a relay waits for before the first token). The clients
alternate; each figure is the median (min-max) of the rounds. The bench's own llhttp client
(bench/client.py: no pool, no timeouts) is a floor for comparison. aiohttp is a development
requirement for this comparison only; without it, it is left out.
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

from bench.client import Target, connect
from bench.gateway import machine_speed_ms
from devbackend.testing import start_devbackend, stop_devbackend
from lib.backend_http import BackendClient

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
# Paced at one token per ms, as make bench's streams: the first line arrives on its own.
PACED = json.dumps(
    {
        "model": "chat-small@tokens-per-second=1000",
        "messages": HELLO,
        "max_tokens": 20,
        "ignore_eos": True,
        "stream": True,
    }
).encode()
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 300

Post = Callable[[bytes], Awaitable[int]]  # sends a body, reads the answer: lines read
first_lines: list[float] = []  # when each stream's first line arrived (perf_counter)


async def count_lines(lines) -> int:
    """Read a streamed answer line by line; note when its first line came."""
    count = 0
    async for _ in lines:
        if not count:
            first_lines.append(time.perf_counter())
        count += 1
    return count


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
            return await count_lines(response.lines())

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
            return await count_lines(response.content)

    return post, session.close


def httpx_client(url: str) -> tuple[Post, Callable[[], Awaitable]]:
    """httpx.AsyncClient as the relay would use it: one shared client, the same limits and
    timeouts, the answer streamed (read whole, or line by line as bytes)."""
    import httpx

    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=4),
        timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
        trust_env=False,
    )
    headers = {"content-type": "application/json", "accept": "application/json"}

    async def post(body: bytes) -> int:
        request = client.build_request("POST", url, content=body, headers=headers)
        response = await client.send(request, stream=True)
        try:
            if body is CHAT:
                await response.aread()
                return 0
            return await count_lines(response.aiter_lines())
        finally:
            await response.aclose()

    return post, client.aclose


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


async def streams(post: Post, *, count: int) -> tuple[float, float, float]:
    """Wall p50 (ms) and CPU (ms) per 200-token stream read line by line, and the wall p50
    (ms) to its first line (what a relay waits for before its first token)."""
    lines = await post(STREAM)
    assert lines > 400, lines  # two lines an event, 200 events and more
    walls, firsts = [], []
    cpu = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        first_lines.clear()
        await post(STREAM)
        walls.append(time.perf_counter() - started)
        firsts.append(first_lines[0] - started)
    cpu = time.process_time() - cpu
    return statistics.median(walls) * 1000, cpu / count * 1000, statistics.median(firsts) * 1000


async def first_lines_paced(post: Post, *, count: int) -> tuple[float]:
    """Wall p50 (ms) from sending a paced stream's request to its first line."""
    firsts = []
    for _ in range(count):
        started = time.perf_counter()
        first_lines.clear()
        await post(PACED)
        firsts.append(first_lines[0] - started)
    return (statistics.median(firsts) * 1000,)


async def measure(make, args, *, with_streams: bool) -> dict[str, tuple[float, ...]]:
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
            figures["paced"] = await first_lines_paced(post, count=args.streams)
        return figures
    finally:
        await close()


async def run(url: str, port: int, args) -> dict[str, dict[str, list[tuple[float, ...]]]]:
    makers = {"anvil": lambda: anvil_client(url + PATH)}
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        print("aiohttp is not installed: left out of the comparison")
    else:
        makers["aiohttp"] = lambda: aiohttp_client(url + PATH)
    makers["httpx"] = lambda: httpx_client(url + PATH)
    makers["bench"] = lambda: bench_client(port)
    rounds: dict[str, dict[str, list[tuple[float, ...]]]] = {name: {} for name in makers}
    for _ in range(args.rounds):
        for name, make in makers.items():
            figures = await measure(make, args, with_streams=name != "bench")
            for scenario, figure in figures.items():
                rounds[name].setdefault(scenario, []).append(figure)
    return rounds


def _cell(figures: list[float]) -> str:
    """The median of the rounds and, with three or more, their spread."""
    median = statistics.median(figures)
    if len(figures) < 3:
        return f"{median:.3f}"
    return f"{median:.3f} ({min(figures):.2f}-{max(figures):.2f})"


def report(rounds: dict[str, dict[str, list[tuple[float, ...]]]], args, machine_ms) -> None:
    print(
        f"\nA million Python additions take {machine_ms:.0f} ms (lower is faster). "
        f"{args.requests} POSTs at c=1 and {args.requests * 2} at c=16 (chat, max_tokens 16), "
        f"{args.streams} streams of 200 tokens; median (min-max) of {args.rounds} rounds; "
        "uvloop.\n"
    )
    names = list(rounds)
    width = 22
    print(f"{'':28}" + "".join(f"{name:>{width}}" for name in names))
    rows = [
        ("c=1", 0, "POST c=1   wall p50 ms"),
        ("c=1", 1, "POST c=1   CPU ms/request"),
        ("c=16", 0, "POST c=16  wall p50 ms"),
        ("c=16", 1, "POST c=16  CPU ms/request"),
        ("stream", 0, "stream 200 wall p50 ms"),
        ("stream", 1, "stream 200 CPU ms/stream"),
        ("stream", 2, "stream first line p50 ms"),
        ("paced", 0, "paced first line p50 ms"),
    ]
    for scenario, index, label in rows:
        cells = []
        for name in names:
            figures = rounds[name].get(scenario)
            cell = _cell([figure[index] for figure in figures]) if figures else "-"
            cells.append(f"{cell:>{width}}")
        print(f"{label:28}" + "".join(cells))
    print(
        "\nbench = bench/client.py (no pool, no timeouts, no retry): the floor. Wall times "
        "include the development backend's own work; CPU is this process's only."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.backend_client")
    parser.add_argument("--requests", type=int, default=2000, help="POSTs at c=1 (x2 at c=16)")
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    machine_ms = machine_speed_ms()
    backend = start_devbackend()
    try:
        port = int(backend.url.rsplit(":", 1)[1])
        rounds = uvloop.run(run(backend.url, port, args))
    finally:
        stop_devbackend(backend.process)
    report(rounds, args, machine_ms)


if __name__ == "__main__":
    main()
