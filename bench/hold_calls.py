"""CPU and wall time of the gateway's credit hold and settlement (``apps.usage.hot``), in process.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/anvil_NAME \\
        .venv/bin/python -m bench.hold_calls [--pairs 2000] [--rounds 2] [--ways cursor,prepared]

Drops and creates the database of DATABASE_URL (never the default one), migrates it, makes a
team, a grant and a key through Anvil's services, then on a uvloop loop runs ``ahold_place``
and ``ahold_settle`` one pair after another, as a request at concurrency 1 does. Per way and
round: CPU (``time.process_time``, this process only, so PostgreSQL's share is not in it) per
pair, and the wall time per pair (p50, p95). The ways alternate in every round, so load from
elsewhere on the machine hits them alike:

- ``prepared``: the code as it is (``hot._call``);
- ``cursor``: a ``steps.Call`` run through the connection's psycopg cursor, as before
  ``apps.usage.prepared`` (``hot._call`` replaced for the run).

Last, the CPU of taking a connection from the pool and giving it back (psycopg_pool).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

WAYS = ("prepared", "cursor")


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


def _world() -> dict:
    """The arguments of a hold and of a settlement, for the benchmark's key."""
    from django.db import connection

    from apps.catalog.models import CatalogModel
    from apps.keys.models import ApiKey
    from bench.world import CHAT_MODEL, setup

    setup(backend_url="http://127.0.0.1:9/v1")
    key = ApiKey.objects.get()
    model = CatalogModel.objects.get(name=CHAT_MODEL)
    connection.close()
    owner = {"api_key_id": key.pk, "grant_id": key.grant_id, "user_id": key.owner_id}
    return {
        "place": {**owner, "catalog_model": model, "prompt_tokens": 20,
                  "max_completion_tokens": 16},
        "settle": {**owner, "prompt_tokens": 20, "completion_tokens": 16, "outcome": "ok",
                   "latency_ms": 3, "estimated": False},
    }  # fmt: skip


async def _cursor_call(conn, call):
    """``hot._call`` before ``apps.usage.prepared``: the statement through psycopg's cursor."""
    from psycopg import Error

    from apps.usage.hot import call_failed

    cursor = conn.hot_cursor
    try:
        await cursor.execute(call.statement, call.params)
    except Error as exc:
        return call_failed(exc)
    return await cursor.fetchone()


def _use(way: str) -> None:
    from apps.usage import hot

    hot._call = _cursor_call if way == "cursor" else _ORIGINAL["call"]


_ORIGINAL: dict = {}


async def _pairs(count: int, world: dict) -> tuple[float, list[float]]:
    from apps.usage.hot import ahold_place, ahold_settle

    walls = []
    cpu = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        hold = await ahold_place(**world["place"])
        await ahold_settle(hold_id=hold.pk, **world["settle"])
        walls.append(time.perf_counter() - started)
    return time.process_time() - cpu, walls


async def _run(options, world: dict) -> None:
    ways = options.ways.split(",")
    for way in ways:  # warm-up: pools open, functions created, code paths hot
        _use(way)
        await _pairs(200, world)
    print(f"{options.pairs} hold+settle pairs per way and round, c=1, uvloop (µs)")
    print(f"{'round':>5} {'way':<10} {'CPU/pair':>9} {'wall p50':>9} {'wall p95':>9}")
    figures: dict[str, list[tuple[float, float, float]]] = {way: [] for way in ways}
    for number in range(1, options.rounds + 1):
        for way in ways:
            _use(way)
            cpu, walls = await _pairs(options.pairs, world)
            p50 = statistics.median(walls) * 1e6
            p95 = statistics.quantiles(walls, n=20)[-1] * 1e6
            figures[way].append((cpu / options.pairs * 1e6, p50, p95))
            print(f"{number:>5} {way:<10} {figures[way][-1][0]:>9.0f} {p50:>9.0f} {p95:>9.0f}")
    for way, rounds in figures.items():
        medians = (statistics.median(column) for column in zip(*rounds, strict=True))
        print(f"{'median':>6} {way:<9} " + " ".join(f"{value:>9.0f}" for value in medians))
    print(f"psycopg_pool getconn + putconn: {await _pool_cycle():.1f} µs of CPU")


async def _pool_cycle(count: int = 20000) -> float:
    """CPU per getconn and putconn of ``hot``'s pool (once per hold, once per settlement)."""
    from apps.usage import hot

    pool = await hot._pool()
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
    world = _world()
    from apps.usage import hot

    _ORIGINAL.update(call=hot._call)
    import uvloop

    uvloop.run(_run(options, world))


if __name__ == "__main__":
    main()
