"""CPU and wall time of the ledger's async hold and settlement (``apps.usage.ledger.aplace`` and
``asettle`` on PostgreSQL: ``apps.usage.pg``), in process.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/anvil_NAME \\
        .venv/bin/python -m bench.hold_calls [--pairs 2000] [--rounds 2] [--ways c1,c8]

Drops and creates the database of DATABASE_URL (never the default one), migrates it, makes a
team, a grant and a key through Anvil's services, then on a uvloop loop runs requests that each
place a hold and settle it. Per way and round: CPU (``time.process_time``, this process only,
so PostgreSQL's share is not in it) per pair, the wall time per pair (p50, p95) and how many
settlements shared a transaction on average. The ways alternate in every round, so load from
elsewhere on the machine hits them alike:

- ``c1``: one request after another, as at concurrency 1 (every settlement alone);
- ``c8``: eight requests at a time, whose settlements the ledger writes in batches.

Last, the CPU of taking a connection from the pool and giving it back (psycopg_pool).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

WAYS = {"c1": 1, "c8": 8}


def _setup_database(url: str) -> None:
    from bench.servers import database_reset

    if not url.startswith("postgresql://") or url.rsplit("/", 1)[1] in ("", "postgres", "anvil"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database of your own: it is dropped")
    database_reset(url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "s" * 40)
    os.environ.setdefault("API_KEY_PEPPER", "bench-pepper-" + "p" * 40)
    os.environ.setdefault("DEBUG", "false")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _plan():
    """The plan of the benchmark key's requests: 20 prompt tokens, 16 completion tokens."""
    from django.db import connection

    from apps.catalog.models import CatalogModel
    from apps.keys.models import ApiKey
    from apps.usage import ledger
    from bench.world import CHAT_MODEL, setup

    setup(backend_url="http://127.0.0.1:9/v1")
    key = ApiKey.objects.get()
    model = CatalogModel.objects.get(name=CHAT_MODEL)
    connection.close()
    return ledger.Plan(
        api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id, model=model,
        prompt_tokens=20, max_completion_tokens=16,
    )  # fmt: skip


_batches: list[int] = []  # the size of every batch of settlements written


def _count_batches() -> None:
    from apps.usage import pg

    settle_all = pg._settle_all

    async def counted(items):
        _batches.append(len(items))
        return await settle_all(items)

    pg._settle_all = counted


async def _pairs(count: int, at_once: int, plan) -> tuple[float, list[float], float]:
    """``count`` requests, ``at_once`` at a time: CPU, the wall time of each, settlements per
    transaction."""
    from apps.usage import ledger

    usage = ledger.Usage(20, 16, latency_ms=3)
    walls: list[float] = []

    async def requests(share: int) -> None:
        for _ in range(share):
            started = time.perf_counter()
            hold = await ledger.aplace(plan)
            await ledger.asettle(hold, usage)
            walls.append(time.perf_counter() - started)

    _batches.clear()
    cpu = time.process_time()
    await asyncio.gather(*(requests(count // at_once) for _ in range(at_once)))
    cpu = time.process_time() - cpu
    return cpu, walls, len(walls) / max(len(_batches), 1)


async def _run(options, plan) -> None:
    ways = options.ways.split(",")
    for way in ways:  # warm-up: pools open, statements prepared, code paths hot
        await _pairs(200, WAYS[way], plan)
    print(f"{options.pairs} hold+settle pairs per way and round, uvloop (µs)")
    print(f"{'round':>5} {'way':<6} {'CPU/pair':>9} {'wall p50':>9} {'wall p95':>9} {'batch':>6}")
    figures: dict[str, list[tuple[float, ...]]] = {way: [] for way in ways}
    for number in range(1, options.rounds + 1):
        for way in ways:
            cpu, walls, batch = await _pairs(options.pairs, WAYS[way], plan)
            p50 = statistics.median(walls) * 1e6
            p95 = statistics.quantiles(walls, n=20)[-1] * 1e6
            figures[way].append((cpu / len(walls) * 1e6, p50, p95, batch))
            cells = " ".join(f"{value:>9.0f}" for value in figures[way][-1][:3])
            print(f"{number:>5} {way:<6} {cells} {batch:>6.1f}")
    for way, rounds in figures.items():
        medians = [statistics.median(column) for column in zip(*rounds, strict=True)]
        cells = " ".join(f"{value:>9.0f}" for value in medians[:3])
        print(f"{'median':>6} {way:<5} {cells} {medians[3]:>6.1f}")
    print(f"psycopg_pool getconn + putconn: {await _pool_cycle():.1f} µs of CPU")


async def _pool_cycle(count: int = 20000) -> float:
    """CPU per getconn and putconn of the ledger's pool (once per call)."""
    from apps.usage import pg

    pool = await pg._pool()
    cpu = time.process_time()
    for _ in range(count):
        await pool.putconn(await pool.getconn())
    return (time.process_time() - cpu) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hold_calls")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ways", default=",".join(WAYS), help=f"some of {', '.join(WAYS)}")
    options = parser.parse_args()
    if set(options.ways.split(",")) - set(WAYS):
        parser.error(f"--ways: some of {', '.join(WAYS)}")
    _setup_database(os.environ.get("DATABASE_URL", ""))
    plan = _plan()
    _count_batches()
    import uvloop

    uvloop.run(_run(options, plan))


if __name__ == "__main__":
    main()
