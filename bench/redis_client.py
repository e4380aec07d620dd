"""The gateway's hot-path Redis commands: redis-py's asyncio client (with its hiredis parser)
against Anvil's pipelined client ``lib.resp``.

    .venv/bin/python -m bench.redis_client [--url redis://127.0.0.1:6379/11] [--ops 20000]

On a uvloop loop, for each client: a ``GET`` of a 1.5 kB value (a cached key row's size), an
``EVALSHA`` of a script shaped like the slot scripts (5 keys, 7 arguments, a two-integer
reply), and both sent side by side in one turn of the loop (``asyncio.gather``), as the
gateway sends a request's key-cache read and its slot script; sequentially (c=1) and with 16
concurrent callers. Prints this process's CPU time per operation (user + system: Redis' own
work is not counted) and, at c=1, the wall time per operation, each the median (min-max) of
``--rounds`` rounds, the clients alternating. Writes one key (``bench:redis-client``) in the
given database and deletes it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import redis.asyncio
import uvloop

from lib import resp

KEY = "bench:redis-client"
VALUE = b"x" * 1500
SCRIPT = "return {1, #KEYS + #ARGV}"
KEYS = tuple(f"bench:{{model}}:{name}" for name in ("held", "waiting", "owners", "rot", "limit"))
ARGS = ("bench:{model}:queue:", "bench:wake", 30000, "0123456789abcdef" * 2, "grant", 128, 256)
OPERATIONS = ("GET", "EVALSHA", "GET+EVALSHA")


def redis_py(url: str):
    client = redis.asyncio.Redis.from_url(url, driver_info=None)
    script = client.register_script(SCRIPT)

    async def get():
        return await client.get(KEY)

    async def evalsha():
        return await script(keys=KEYS, args=ARGS)

    async def both():
        return await asyncio.gather(client.get(KEY), script(keys=KEYS, args=ARGS))

    return {"GET": get, "EVALSHA": evalsha, "GET+EVALSHA": both}, client.aclose


def anvil(url: str):
    client = resp.Client(url)
    script = resp.Script(SCRIPT)

    async def get():
        return await client.execute("GET", KEY)

    async def evalsha():
        return await script(client, KEYS, ARGS)

    async def both():
        return await asyncio.gather(client.execute("GET", KEY), script(client, KEYS, ARGS))

    async def close():
        client.close()

    return {"GET": get, "EVALSHA": evalsha, "GET+EVALSHA": both}, close


CLIENTS = {"redis-py": redis_py, "resp": anvil}


async def redis_cpu(info: redis.asyncio.Redis) -> float:
    """Seconds of CPU the Redis server has used (all its clients': other users of a shared
    Redis count too)."""
    figures = await info.info("cpu")
    return figures["used_cpu_user"] + figures["used_cpu_sys"]


async def one_round(call, info, *, ops: int, concurrency: int) -> tuple[float, float, float]:
    """µs of this process' CPU per call, the wall p50 per call in µs, and µs of the Redis
    server's CPU per call."""
    walls: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await call()
            walls.append(time.perf_counter() - started)

    server = await redis_cpu(info)
    cpu = time.process_time()
    await asyncio.gather(*(worker(ops // concurrency) for _ in range(concurrency)))
    cpu = time.process_time() - cpu
    server = await redis_cpu(info) - server
    return cpu / ops * 1e6, statistics.median(walls) * 1e6, server / ops * 1e6


async def measure(url: str, ops: int, rounds: int, info) -> dict[tuple, list[tuple]]:
    results: dict[tuple, list[tuple]] = {}
    made = {name: make(url) for name, make in CLIENTS.items()}
    for calls, _ in made.values():
        await calls["GET+EVALSHA"]()  # connected, the script loaded
        for call in calls.values():
            await one_round(call, info, ops=ops // 10, concurrency=16)  # warm-up
    for _ in range(rounds):
        for name, (calls, _) in made.items():
            for operation, call in calls.items():
                for concurrency in (1, 16):
                    figures = await one_round(call, info, ops=ops, concurrency=concurrency)
                    results.setdefault((name, operation, concurrency), []).append(figures)
    for _, close in made.values():
        await close()
    return results


def _cell(figures: list[float]) -> str:
    return f"{statistics.median(figures):.1f} ({min(figures):.0f}-{max(figures):.0f})"


async def main(url: str, ops: int, rounds: int) -> None:
    setup = redis.asyncio.Redis.from_url(url)
    await setup.set(KEY, VALUE)
    parser = type(setup.connection_pool.make_connection()._parser).__name__
    try:
        results = await measure(url, ops, rounds, setup)
    finally:
        await setup.delete(KEY)
        await setup.aclose()
    print(
        f"µs per operation, median (min-max) of {rounds} rounds of {ops}; uvloop; "
        f"redis-py {redis.__version__} with {parser}. CPU: this process's; Redis: the "
        "server's CPU (all its clients'); wall: p50 at c=1"
    )
    kinds = {"CPU": 0, "Redis": 2, "wall": 1}  # where one_round puts each figure
    columns = [(name, kind) for kind in kinds for name in CLIENTS]
    header = "".join(f"{name + ' ' + kind:>20}" for name, kind in columns)
    print(f"{'operation':<13}{'callers':>8}{header}")
    for operation in OPERATIONS:
        for concurrency in (1, 16):
            cells = []
            for name, kind in columns:
                figures = [f[kinds[kind]] for f in results[name, operation, concurrency]]
                wall = kind == "wall"
                cells.append("" if wall and concurrency != 1 else _cell(figures))
            print(f"{operation:<13}{concurrency:>8}" + "".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--ops", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    uvloop.run(main(options.url, options.ops, options.rounds))
