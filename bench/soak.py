"""Anvil's soak (issue 11): the whole production stack under mixed load and chaos, then the
books checked.

    make soak                        # 3 minutes of load; about 3.5 in all
    make soak SOAK_ARGS="--minutes 1 --clients 60"

In one run it resets its own PostgreSQL database (anvil_soak) and Redis db (10); starts the
development backend, two Anvil gateway processes (uvicorn, production settings), a Celery
worker and beat, each a separate process on loopback; runs 80 clients against the two
gateways for ``--minutes`` while limits are lowered (some raised again), a key is revoked and
the backend is killed and started again; waits (bounded) for the settlements, stops the
gateways, runs the hold sweeper, and prints the requests by outcome and a PASS/FAIL line per
invariant. Exit status 1 when any fails. Every process it started is stopped on exit, Ctrl+C
included. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python bench/soak.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import servers
from bench import soak_checks as checks
from bench.soak_clients import TIMEOUT
from bench.soak_run import Run

# Shorter than production so a few minutes show what the defaults take half an hour to show:
# requests last at most 20 s, so a hold left unsettled expires 140 s after it was placed and
# the sweeper (every minute) releases it within the run; a stalled backend is cut after 5 s.
SOAK_ENVIRONMENT = (
    ("GATEWAY_REQUEST_MAX_SECONDS", "20"),
    ("GATEWAY_READ_TIMEOUT", "5"),
)
READY_HOLD_SECONDS = 2  # GATEWAY_READY_HOLD_SECONDS's default: idle ready holds go after it


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description="Anvil's soak: load, chaos, then the books."
    )
    add = parser.add_argument
    add("--minutes", type=float, default=3.0, help="of load (default 3)")
    add("--clients", type=int, default=80, help="concurrent clients (default 80)")
    add("--keys", type=int, default=0, help="API keys the clients share (default 3/4 of them)")
    add("--changes", type=int, default=0, help="limit changes (default 8 a minute)")
    add("--seed", type=int, default=11)
    add("--database-url", default="postgresql://postgres@127.0.0.1:5432/anvil_soak")
    add("--redis-url", default="redis://127.0.0.1:6379/10", help="a db of its own: flushed")
    add("--keep-logs", action="store_true", help="keep the processes' logs even when it passes")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 60 or not 1 <= args.clients <= 500:
        parser.error("--minutes must be in (0, 60] and --clients in [1, 500]")
    args.keys = args.keys or max(1, math.ceil(args.clients * 3 / 4))
    args.changes = args.changes or max(4, round(args.minutes * 8))
    return args


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _django(settings: servers.Settings) -> None:
    """Anvil's services in this process, on the soak's database and Redis."""
    os.environ.update(settings.environment())
    import django

    django.setup()
    for name in ("httpx", "httpx2", "openai"):  # a line per request at INFO
        logging.getLogger(name).setLevel(logging.WARNING)


def settle_wait(world, *, timeout: float = 30.0) -> int:
    """Wait until no hold is open, or the number stops moving for longer than an idle ready
    hold lives (one left open then is a miss); at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = world.open_holds()
        if count == 0:
            return 0
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > READY_HOLD_SECONDS + 5:
            return count
        time.sleep(0.5)
    return last


def sweep(world, run: Run) -> int:
    """The sweeper once more, now that every request has ended; its failure is reported."""
    try:
        return world.sweep()
    except Exception as exc:
        run.events.setdefault("errors", []).append(f"the sweeper at the end: {exc!r}")
        return 0


def soak(args: argparse.Namespace, settings: servers.Settings, logs: Path) -> int:
    started = time.monotonic()
    servers.say(f"resetting {args.database_url} and {args.redis_url}; migrating …")
    servers.database_reset(args.database_url)
    servers.redis_reset(args.redis_url)
    servers.manage(settings, "manage.py", "migrate", "--noinput", "-v", "0")
    _django(settings)
    from bench import soak_world as world

    run = Run(args, settings, logs)
    try:
        run.start()
        servers.say(
            f"{args.clients} clients on {args.keys} keys for {args.minutes:g} min "
            f"(gateways on ports {', '.join(map(str, run.ports))}) …"
        )
        asyncio.run(run.load(until=time.monotonic() + args.minutes * 60, bound=TIMEOUT + 15))
        servers.say("load over; waiting for settlements …")
        left = settle_wait(world)
        run.stop_gateways()
        swept = sweep(world, run)
        servers.say(f"{left} holds open after the wait; the sweeper released {swept}")
    finally:
        run.stop()
    facts = world.facts(sorted({change.budget for change in run.changes}, key=str))
    results = [
        checks.counters(facts),
        checks.holds(facts, swept_at_end=swept),
        checks.one_row_each(run.records, facts, run.keys),
        checks.charges(run.records, facts, run.keys),
        checks.overshoot(run.changes, facts),
        checks.errors(run.records, sorted(logs.glob("*.log"))),
        checks.coverage(run.records, run.changes, run.events),
    ]
    report(args, run, results, seconds=time.monotonic() - started)
    return 0 if all(check.passed for check in results) else 1


def report(args, run: Run, results: list, *, seconds: float) -> None:
    records = run.records
    load = run.load_seconds or 1
    print(
        f"\nAnvil soak: {args.minutes:g} min of load, {args.clients} clients on {args.keys} keys, "
        "2 gateway processes, Celery worker + beat, the development backend with 7 models"
    )
    print(f"requests: {len(records)} ({len(records) / load:.0f}/s), by outcome:")
    for outcome, count in checks.outcomes(records):
        print(f"  {count:>8}  {outcome}")
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(run.change_kinds().items()))
    raised = sum(1 for change in run.changes if change.raised)
    events, sweeps = run.events, run.sweeps()
    print(
        f"events: {len(run.changes)} limit changes ({kinds}; {raised} of them raises); "
        f"key {events.get('revoked')} "
        f"revoked at {events.get('revoked_at', 0):.0f} s; backend killed at "
        f"{events.get('restarted_at', 0):.0f} s and back after {events.get('down', 0):.1f} s; "
        f"the beat's sweeper: {sweeps['succeeded']} runs, {sweeps['raised']} failed"
    )
    print("checks:")
    for check in results:
        print(check)
    failed = sum(1 for check in results if not check.passed)
    verdict = "PASS" if not failed else f"FAIL ({failed} of {len(results)} checks)"
    print(f"soak: {verdict} in {seconds:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    random.seed(args.seed)
    settings = servers.Settings(args.database_url, args.redis_url, extra=SOAK_ENVIRONMENT)
    logs = Path(tempfile.mkdtemp(prefix="anvil-soak-"))
    status = 1
    try:
        status = soak(args, settings, logs)
    finally:
        if status == 0 and not args.keep_logs:
            shutil.rmtree(logs)
        else:
            print(f"logs: {logs}")
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
