"""Anvil's gateway benchmark (issue 4): the development backend straight vs through Anvil.

    make bench                     # or: .venv/bin/python -m bench.gateway [options]

In one run it resets its own PostgreSQL database (anvil_bench) and Redis db (9), starts the
development backend and Anvil (uvicorn, one worker, production settings) as separate
processes on loopback, and prints side by side: requests/s and p50/p95/p99 latency for
non-streaming chat at concurrency 1, 16 and 64; streaming time to first token, total time and
chunk-by-chunk relay timing; server CPU per request (from /proc); then PASS/FAIL per target
and the ledger check. With ``--workers N`` it then runs the non-streaming load again through
Anvil under ``uvicorn --workers N`` and prints it beside the single-process run, then checks
budgets, the per-model concurrency limit, the fair queue and a revocation across its workers
and across N independent servers (bench/scale_out.py). Every process
it started is stopped on exit, Ctrl+C included. It exits 1 when a target or check fails. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python bench/gateway.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scale_out, servers
from bench.client import Target
from bench.measure import Bench, Measured
from bench.report import checks, diagnostics, stream_lines, table, workers_table
from devbackend.testing import start_devbackend, stop_devbackend


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway",
        description="Anvil's gateway benchmark: the development backend direct vs via Anvil.",
    )
    add = parser.add_argument
    add("--database-url", default="postgresql://postgres@127.0.0.1:5432/anvil_bench")
    add("--redis-url", default="redis://127.0.0.1:6379/9", help="a db of its own: flushed")
    add("--requests", type=int, default=2000, help="per scenario and side (default 2000)")
    add("--seconds", type=float, default=10, help="…or fewer when they take longer than this")
    add("--rounds", type=int, default=4, help="direct and Anvil alternate this many times")
    add("--warmup", type=int, default=400, help="requests per side before measuring")
    add("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8, 16, 64])
    add("--streams", type=int, default=50, help="streams per side (default 50)")
    add("--stream-tokens", type=int, default=200)
    add("--loop", default="uvloop", choices=["uvloop", "asyncio"], help="Anvil's event loop")
    add("--http", default="httptools", choices=["httptools", "h11"], help="Anvil's HTTP parser")
    add(
        "--access-log",
        action="store_true",
        help="uvicorn with its access log (off in the commands Anvil ships, and by default)",
    )
    add("--settings", default="portal.settings", help="Anvil's Django settings module")
    add("--profile", type=Path, help="py-spy Anvil after the warm-up; raw stacks to this dir")
    add(
        "--workers",
        type=_positive,
        default=1,
        help="N > 1: after the single-process run, the non-streaming runs again through "
        "Anvil under uvicorn --workers N, printed beside it",
    )
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


TOPOLOGIES = ("workers", "servers")  # uvicorn --workers N; N servers on N ports


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _run_loop(coroutine):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def run(args: argparse.Namespace, settings: servers.Settings, logs: Path) -> tuple:
    backend = anvil = bench = None
    workers = None
    scale_out_checks, scale_out_ok = [], 0
    machine_ms = machine_speed_ms()
    try:
        servers.say(f"resetting {args.database_url} and {args.redis_url}; migrating …")
        servers.database_reset(args.database_url)
        servers.redis_reset(args.redis_url)
        servers.manage(settings, "manage.py", "migrate", "--noinput", "-v", "0")
        backend = start_devbackend()
        world = servers.world_call(settings, "setup", "--backend-url", f"{backend.url}/v1")
        if args.workers > 1:
            topologies = {tag: scale_out.data_create(settings, tag) for tag in TOPOLOGIES}
        transactions = servers.pg_transactions(args.database_url)
        servers.say(f"starting Anvil (uvicorn --loop {args.loop} --http {args.http}) …")
        anvil = servers.anvil_start(
            settings,
            loop=args.loop,
            http=args.http,
            log=logs / "anvil.log",
            access_log=args.access_log,
        )
        direct = Target("direct", int(backend.url.rsplit(":", 1)[1]), "/v1/chat/completions")
        bench = Bench(
            args,
            direct=direct,
            anvil=Target("Anvil", anvil.port, "/api/v1/chat/completions", world["secret"]),
            pids={"anvil": anvil.process.pid, "backend": backend.process.pid},
            redis_url=args.redis_url,
        )
        measured = _run_loop(bench.run())
        threads = servers.thread_count(anvil.process.pid)
        if args.workers > 1:
            servers.process_stop(anvil.process)
            anvil = None
            transactions = servers.pg_transactions(args.database_url) - transactions
            workers, workers_transactions, found, ok = _workers_run(
                args, settings, logs, direct, world, topologies["workers"], backend=backend
            )
            more, more_ok = _servers_run(
                args, settings, logs, topologies["servers"], backend_url=backend.url
            )
            scale_out_checks, scale_out_ok = found + more, ok + more_ok
    finally:
        if bench is not None and bench.profiler is not None:
            servers.process_stop(bench.profiler)
        if anvil is not None:
            servers.process_stop(anvil.process)
        if backend is not None:
            stop_devbackend(backend.process)
    if workers is None:
        transactions = servers.pg_transactions(args.database_url) - transactions
    ledger = servers.world_call(settings, "check")
    extra = {"pg_transactions": transactions, "anvil_threads": threads, "machine_ms": machine_ms}
    if workers is not None:
        extra["workers"] = workers
        extra["workers_pg_transactions"] = workers_transactions
        extra["scale_out"] = scale_out_checks
        extra["scale_out_ok"] = scale_out_ok
    return measured, ledger, extra


def _workers_run(args, settings, logs: Path, direct: Target, world: dict, data: dict, *, backend):
    """The non-streaming runs again, direct and through Anvil under uvicorn --workers N
    (the single-process Anvil stopped first), then the checks across its workers; its
    Measured, PostgreSQL transactions, the checks and their requests answered 200."""
    transactions = servers.pg_transactions(args.database_url)
    servers.say(f"starting Anvil (uvicorn --workers {args.workers}) …")
    anvil = servers.anvil_start(
        settings,
        loop=args.loop,
        http=args.http,
        log=logs / "anvil-workers.log",
        access_log=args.access_log,
        workers=args.workers,
    )
    try:
        pids = servers.process_tree(anvil.process.pid)  # uvicorn's parent and its workers
        name = f"Anvil x{args.workers}"
        target = Target(name, anvil.port, "/api/v1/chat/completions", world["secret"])
        bench = Bench(
            argparse.Namespace(**{**vars(args), "profile": None}),
            direct=direct,
            anvil=target,
            pids={"anvil": pids, "backend": backend.process.pid},
            redis_url=args.redis_url,
        )
        measured = _run_loop(bench.run(streaming=False))
        transactions = servers.pg_transactions(args.database_url) - transactions
        processes = scale_out.Processes(
            f"uvicorn --workers {args.workers}",
            ports=[anvil.port],
            pids=servers.uvicorn_workers(anvil.process.pid),
        )
        found, ok = _run_loop(
            scale_out.run(processes, settings, data, tag="workers", backend_url=backend.url)
        )
    finally:
        servers.process_stop(anvil.process, timeout=30)
    return measured, transactions, found, ok


def _servers_run(args, settings, logs: Path, data: dict, *, backend_url: str):
    """The checks across N independent Anvil servers (uvicorn, one worker each) on N ports;
    the checks and their requests answered 200."""
    servers.say(f"starting {args.workers} Anvil servers …")
    started = []
    try:
        for index in range(args.workers):
            started.append(
                servers.anvil_start(
                    settings,
                    loop=args.loop,
                    http=args.http,
                    log=logs / f"anvil-server-{index + 1}.log",
                    access_log=args.access_log,
                )
            )
        processes = scale_out.Processes(
            f"{args.workers} servers",
            ports=[anvil.port for anvil in started],
            pids=[anvil.process.pid for anvil in started],
        )
        return _run_loop(
            scale_out.run(processes, settings, data, tag="servers", backend_url=backend_url)
        )
    finally:
        for anvil in started:
            servers.process_stop(anvil.process, timeout=30)


def machine_speed_ms() -> float:
    """How fast this machine runs plain Python right now: the best of five runs of a loop of a
    million additions, in ms. The figures below are absolute CPU times, and the same code was
    seen to need 25 % more on one day's machine than on another's: this line lets two runs'
    tables be compared."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        total = 0
        for number in range(1_000_000):
            total += number
        best = min(best, time.process_time() - started)
    return best * 1000


def report(args, measured: Measured, ledger: dict, extra: dict) -> int:
    access = "on" if args.access_log else "off"
    print(
        f"\nMachine: {os.cpu_count()} cores; a million Python additions take "
        f"{extra['machine_ms']:.0f} ms (measured before the runs; lower is faster)."
    )
    print(
        f"Anvil: uvicorn --workers 1 --loop {args.loop} --http {args.http}, uvicorn's access log "
        f"{access}, settings {args.settings}; PostgreSQL + Redis, DEBUG off.\nNon-streaming chat "
        f"(max_tokens 16), {args.requests} requests (at most {args.seconds:g} s) per side and "
        "scenario after a warm-up; latency in ms.\n"
    )
    print(table(measured.scenarios))
    print()
    print(
        stream_lines(
            measured.streaming,
            streams=args.streams,
            tokens=args.stream_tokens,
            anvil_cpu_ms=measured.stream_cpu_ms,
        )
    )
    print()
    workers = extra.get("workers")
    if workers is not None:
        print(workers_report(args, measured, workers, extra))
        print()
    print(diagnostics(measured, extra))
    print()
    results = checks(_with_workers(measured, workers, extra), ledger)
    for check in results:
        print(check)
    if extra.get("scale_out"):
        print(
            f"\nAcross processes (--workers {args.workers}; bench/README.md): "
            "figures per process in the order of their ids (a/b: the first's, the second's):"
        )
        for check in extra["scale_out"]:
            print(check)
        results += extra["scale_out"]
    if args.profile:
        from bench.profile import summary

        print("\n(profiled with py-spy after the warm-up; the figures above include its cost)")
        for name, count in measured.profiled.items():
            print(f"\n{name} ({args.profile / name}.txt):")
            print(summary(args.profile / f"{name}.txt", requests=count))
    return 0 if all(check.passed for check in results) else 1


def workers_report(args, measured: Measured, workers: Measured, extra: dict) -> str:
    """The --workers N run: its own side-by-side table, then through Anvil beside the
    single-process run."""
    n = args.workers
    per_request = extra["workers_pg_transactions"] / max(workers.anvil_ok, 1)
    return "\n".join(
        [
            f"Anvil under uvicorn --workers {n} (otherwise as above), started after the "
            "single-process Anvil stopped; the same non-streaming runs, direct and Anvil "
            f"alternating again; Anvil CPU is that of all its {n} workers and their parent:",
            "",
            table(workers.scenarios),
            "",
            f"Through Anvil: 1 worker (the first table) beside {n} workers ({n}w), the same key "
            "and grant, PostgreSQL and Redis:",
            "",
            workers_table(measured.scenarios, workers.scenarios, n),
            f"PostgreSQL transactions per request, {n} workers: {per_request:.2f}; Anvil's "
            f"answers other than 200, {n} workers, warm-ups included: {workers.anvil_failed or 0}",
        ]
    )


def _with_workers(measured: Measured, workers: Measured | None, extra: dict) -> Measured:
    """For the ledger check: the requests through Anvil of both runs, and those the checks
    across processes had answered 200 (their refusals, 429 and 401, leave no ledger row)."""
    if workers is None:
        return measured
    failed = dict(measured.anvil_failed)
    for error, count in workers.anvil_failed.items():
        failed[error] = failed.get(error, 0) + count
    ok = measured.anvil_ok + workers.anvil_ok + extra["scale_out_ok"]
    return dataclasses.replace(measured, anvil_ok=ok, anvil_failed=failed)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    settings = servers.Settings(args.database_url, args.redis_url, django_settings=args.settings)
    logs = Path(tempfile.mkdtemp(prefix="anvil-bench-"))
    try:
        measured, ledger, extra = run(args, settings, logs)
    except Exception:
        servers.say(f"failed; Anvil's log is in {logs}")
        raise
    status = report(args, measured, ledger, extra)
    failed = _with_workers(measured, extra.get("workers"), extra).anvil_failed
    scale_out_failed = not all(check.passed for check in extra.get("scale_out", []))
    if failed or ledger["mismatches"] or ledger["open_holds"] or scale_out_failed:
        print(f"\nAnvil's log (its access log and warnings): {logs / 'anvil.log'}")
        if extra.get("workers") is not None:
            print(f"With --workers {args.workers}: {logs / 'anvil-workers.log'}")
            print(f"The {args.workers} servers: {logs}/anvil-server-*.log")
    else:
        shutil.rmtree(logs)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
