"""The hot-row ceiling (issue 19): how many holds and settlements one grant sustains.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/anvil_NAME \\
        .venv/bin/python -m bench.hot_row [--grants 1,2,4] [--processes 1,2] [--seconds 5]

Every request of a grant updates that grant's counter row twice (its hold, its settlement),
and each update waits for the row's lock: the row is a ceiling on the grant's request rate,
whatever the number of gateway processes. This measures it on this machine, through the
gateway's own path: ``apps.usage.ledger.aplace`` then ``asettle`` (awaited) on PostgreSQL,
which write placements and settlements in batches (``apps.usage.pg``), with no backend and no
HTTP in between.

Drops and creates the database of DATABASE_URL (never the default one), migrates it, makes
4 grants of one team, each with 8 keys of 8 members (so only the grant's row is shared by its
requests), then for each number of processes and of grants: that many processes (like gateway
processes: each its own event loop and connection pool, GATEWAY_DB_POOL_SIZE connections)
each run ``--concurrency`` requests at a time, spread evenly over the grants and their keys,
for ``--seconds`` after a warm-up. Each request places a hold (20 prompt tokens, 16
completion tokens) and settles it. Prints hold+settlement pairs per second in all and per
grant, the wall time of a pair (p50, p99) and the processes' CPU per pair; then checks the
counters equal the ledger and no hold is open. With ``--disjoint`` each process sends its
requests to grants of its own instead (as if each gateway served a slice of the grants).

PostgreSQL, the processes and whatever else runs share the machine's cores: run it on a
quiet machine, two or three times, and read the best.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python bench/hot_row.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GRANTS = 4
KEYS_PER_GRANT = 8


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "s" * 40)
    os.environ.setdefault("API_KEY_PEPPER", "bench-pepper-" + "p" * 40)
    os.environ.setdefault("DEBUG", "false")
    import django

    django.setup()


def _setup(url: str) -> None:
    """A fresh database: a team of KEYS_PER_GRANT members, GRANTS grants, a key of each member
    in each grant."""
    from bench.servers import database_reset

    if not url.startswith("postgresql://") or url.rsplit("/", 1)[1] in ("", "postgres", "anvil"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database of your own: it is dropped")
    database_reset(url)
    _django()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from apps.accounts.models import User
    from apps.catalog.models import CatalogModel
    from apps.grants.models import Grant
    from apps.keys.services import api_key_create
    from apps.teams.models import Membership, Role, Team
    from bench.world import CHAT_MODEL, setup

    call_command("migrate", verbosity=0)
    setup(backend_url="http://127.0.0.1:9/v1")  # the catalog (never called), a first grant
    model = CatalogModel.objects.get(name=CHAT_MODEL)
    team = Team.objects.create(name="hot-row")
    users = [
        User.objects.create_user(username=f"hot-row-{n}", email=f"hot-row-{n}@example.org")
        for n in range(KEYS_PER_GRANT)
    ]
    Membership.objects.bulk_create(Membership(team=team, user=u, role=Role.MEMBER) for u in users)
    today = timezone.localdate()
    for g in range(GRANTS):
        grant = Grant.objects.create(
            team=team, identifier=f"hot-row-{g}", credits_allocated=Decimal("1000000000"),
            valid_from=today - dt.timedelta(days=1), valid_until=today + dt.timedelta(days=30),
        )  # fmt: skip
        grant.allowed_models.add(model)
        for user in users:
            api_key_create(grant=grant, owner=user, name=f"hot-row-{g}-{user.pk}")
    connection.close()


def _plans(grants: int) -> list[list]:
    """For each of the first ``grants`` grants, the plans of its keys' requests."""
    from apps.catalog.models import CatalogModel
    from apps.keys.models import ApiKey
    from apps.usage import ledger
    from bench.world import CHAT_MODEL

    model = CatalogModel.objects.get(name=CHAT_MODEL)

    def plan(key) -> ledger.Plan:
        return ledger.Plan(
            api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id, model=model,
            prompt_tokens=20, max_completion_tokens=16,
        )  # fmt: skip

    return [
        [
            plan(key)
            for key in ApiKey.objects.filter(grant__identifier=f"hot-row-{g}").order_by("pk")
        ]
        for g in range(grants)
    ]


async def _load(plans: list[list], *, concurrency: int, seconds: float) -> tuple[int, list]:
    """``concurrency`` requests at a time for ``seconds``, request i of grant i % len(plans);
    the pairs done and the wall time of each."""
    from apps.usage import ledger

    usage = ledger.Usage(20, 16, latency_ms=3)
    walls: list[float] = []
    end = time.perf_counter() + seconds

    async def requests(index: int) -> None:
        grant = plans[index % len(plans)]
        plan = grant[(index // len(plans)) % len(grant)]
        while (started := time.perf_counter()) < end:
            hold = await ledger.aplace(plan)
            await ledger.asettle(hold, usage)
            walls.append(time.perf_counter() - started)

    await asyncio.gather(*(requests(index) for index in range(concurrency)))
    return len(walls), walls


def _worker(grants, index, processes, options, barrier, results) -> None:
    """One process: warm up, wait for the others, run, report (pairs, walls, CPU seconds).
    With ``--disjoint`` its requests go to grants of its own (``index``, ``index`` + the
    number of processes, ...; shared when there are fewer grants than processes)."""
    _django()
    import uvloop

    plans = _plans(grants)
    if options.disjoint:
        plans = plans[index % grants :: processes] or plans
    concurrency, seconds = options.concurrency, options.seconds

    async def run():
        await _load(plans, concurrency=concurrency, seconds=0.5)  # pool open, statements ready
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        cpu = time.process_time()
        pairs, walls = await _load(plans, concurrency=concurrency, seconds=seconds)
        results.put((pairs, walls, time.process_time() - cpu))

    uvloop.run(run())


def _measure(processes: int, grants: int, options) -> dict:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    workers = [
        context.Process(target=_worker, args=(grants, index, processes, options, barrier, results))
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=120)
    started = time.perf_counter()
    done = [results.get(timeout=options.seconds + 120) for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join(timeout=30)
    pairs = sum(d[0] for d in done)
    walls = sorted(w for d in done for w in d[1])
    return {
        "pairs_s": pairs / elapsed,
        "p50": 1000 * statistics.median(walls),
        "p99": 1000 * walls[min(len(walls) - 1, round(0.99 * (len(walls) - 1)))],
        "cpu_ms": 1000 * sum(d[2] for d in done) / max(pairs, 1),
    }


_HEAD = "\n".join(
    [
        f"{'processes':>9} {'grants':>6} | {'pairs/s':>8} {'per grant':>9} | "
        f"{'p50 ms':>7} {'p99 ms':>7} | {'procs CPU':>9}",
        f"{'':>9} {'':>6} | {'':>8} {'':>9} | {'':>7} {'':>7} | {'ms/pair':>9}",
        "-" * 67,
    ]
)


def _row(processes: int, grants: int, m: dict) -> str:
    return (
        f"{processes:>9} {grants:>6} | {m['pairs_s']:>8.0f} {m['pairs_s'] / grants:>9.0f} | "
        f"{m['p50']:>7.2f} {m['p99']:>7.2f} | {m['cpu_ms']:>9.2f}"
    )


def _check() -> str:
    from apps.usage.models import Hold, LedgerEntry
    from apps.usage.reconcile import counters_reconcile

    mismatches = counters_reconcile()
    holds = Hold.objects.count()
    ok = not mismatches and holds == 0
    return (
        f"{'PASS' if ok else 'FAIL'}  {LedgerEntry.objects.count()} ledger rows; {holds} open "
        f"holds; counters vs ledger: {len(mismatches)} mismatches {mismatches[:3]}"
    )


def _numbers(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_row", description=__doc__)
    parser.add_argument("--grants", type=_numbers, default=[1, 2, 4], help=f"at most {GRANTS}")
    parser.add_argument("--processes", type=_numbers, default=[1, 2])
    parser.add_argument("--concurrency", type=int, default=64, help="requests at a time, each")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="every combination, this often")
    parser.add_argument(
        "--disjoint",
        action="store_true",
        help="each process its own grants (by default every process serves every grant)",
    )
    options = parser.parse_args(argv)
    if max(options.grants) > GRANTS or min(options.grants + options.processes) < 1:
        parser.error(f"--grants between 1 and {GRANTS}; --processes at least 1")
    _setup(os.environ.get("DATABASE_URL", ""))
    from django.conf import settings

    print(
        f"Hold + settlement pairs (ledger.aplace, then asettle awaited) on PostgreSQL, "
        f"{options.concurrency} requests at a time per process for {options.seconds:g} s, "
        f"GATEWAY_DB_POOL_SIZE {settings.GATEWAY_DB_POOL_SIZE}; {os.cpu_count()} cores; "
        + ("each process its own grants" if options.disjoint else "every process every grant")
        + ".\n"
    )
    runs: dict[tuple[int, int], list[dict]] = {}
    for number in range(1, options.rounds + 1):
        print(f"Round {number} of {options.rounds}:\n{_HEAD}")
        for processes in options.processes:
            for grants in options.grants:
                measured = _measure(processes, grants, options)
                runs.setdefault((processes, grants), []).append(measured)
                print(_row(processes, grants, measured), flush=True)
    print(f"\nThe best of {options.rounds} rounds (the most pairs/s):\n")
    print(_HEAD)
    for (processes, grants), measured in runs.items():
        print(_row(processes, grants, max(measured, key=lambda m: m["pairs_s"])))
    print()
    line = _check()
    print(line)
    return 0 if line.startswith("PASS") else 1


if __name__ == "__main__":
    sys.exit(main())
