"""CPU per hot-path Redis command: redis-py's asyncio client against ``apps.core.resp``.

    .venv/bin/python -m bench.redis_client [--url redis://127.0.0.1:6379/11] [--ops 20000]

On a uvloop loop, the process' CPU time (user + system, this process only: Redis' own work is
not counted) per ``GET`` of a 1.5 kB value (a cached key row's size) and per ``EVALSHA`` of a
script shaped like the slot scripts (5 keys, 7 arguments, a two-integer reply), sequentially
(c=1) and with 16 concurrent callers. Each figure is the best of three rounds. Writes one key
(``bench:redis-client``) in the given database and deletes it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis.asyncio
import uvloop

from apps.core import resp

KEY = "bench:redis-client"
VALUE = b"x" * 1500
SCRIPT = "return {1, #KEYS + #ARGV}"
KEYS = tuple(f"bench:{{model}}:{name}" for name in ("held", "waiting", "owners", "rot", "limit"))
ARGS = ("bench:{model}:queue:", "bench:wake", 30000, "0123456789abcdef" * 2, "grant", 128, 256)
ROUNDS = 3


def redis_py(url: str):
    client = redis.asyncio.Redis.from_url(url, driver_info=None)
    script = client.register_script(SCRIPT)

    async def get():
        return await client.get(KEY)

    async def evalsha():
        return await script(keys=KEYS, args=ARGS)

    return get, evalsha, client.aclose


def new_client(url: str):
    client = resp.client(url)
    script = resp.Script(SCRIPT)

    async def get():
        return await client.execute("GET", KEY)

    async def evalsha():
        return await script(client, KEYS, ARGS)

    async def close():
        client.close()

    return get, evalsha, close


async def cpu_per_call(call, *, ops: int, concurrency: int) -> float:
    """µs of this process' CPU per call, the best of ``ROUNDS`` rounds."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        await asyncio.gather(*(worker(ops // concurrency) for _ in range(concurrency)))
        best = min(best, (time.process_time() - started) / ops * 1e6)
    return best


async def measure(url: str, ops: int) -> dict[tuple[str, str, int], float]:
    results = {}
    for name, make in (("redis-py", redis_py), ("resp", new_client)):
        get, evalsha, close = make(url)
        await get()  # connect
        await evalsha()  # load the script
        for command, call in (("GET", get), ("EVALSHA", evalsha)):
            await cpu_per_call(call, ops=ops // 10, concurrency=16)  # warm-up
            for concurrency in (1, 16):
                cpu = await cpu_per_call(call, ops=ops, concurrency=concurrency)
                results[name, command, concurrency] = cpu
        await close()
    return results


async def main(url: str, ops: int) -> None:
    setup = redis.asyncio.Redis.from_url(url)
    await setup.set(KEY, VALUE)
    try:
        results = await measure(url, ops)
    finally:
        await setup.delete(KEY)
        await setup.aclose()
    print(f"CPU µs per command (this process only; best of {ROUNDS} rounds of {ops})")
    print(f"{'command':<10}{'callers':>8}{'redis-py':>11}{'resp':>9}{'saved':>9}")
    for command in ("GET", "EVALSHA"):
        for concurrency in (1, 16):
            old = results["redis-py", command, concurrency]
            new = results["resp", command, concurrency]
            saved = f"{1 - new / old:.0%}"
            print(f"{command:<10}{concurrency:>8}{old:>11.1f}{new:>9.1f}{saved:>9}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--ops", type=int, default=20000)
    options = parser.parse_args()
    uvloop.run(main(options.url, options.ops))
