"""The processes and stores the benchmark runs against: its own PostgreSQL database and Redis
db, the development backend and Anvil under uvicorn, each a separate process on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RATE = 250  # py-spy samples per second


@dataclass(frozen=True)
class Settings:
    database_url: str  # the benchmark's own database; dropped and created anew
    redis_url: str  # the benchmark's own Redis db; flushed
    django_settings: str = "portal.settings"
    extra: tuple[tuple[str, str], ...] = ()  # more variables, e.g. the soak's shorter timeouts

    def environment(self) -> dict[str, str]:
        """Production settings: PostgreSQL, Redis, DEBUG off, real secrets."""
        return dict(
            os.environ,
            **dict(self.extra),
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            DEBUG="false",
            SECRET_KEY="bench-secret-key-" + "s" * 40,
            API_KEY_PEPPER="bench-pepper-" + "p" * 40,
            DJANGO_SETTINGS_MODULE=self.django_settings,
            PYTHONUNBUFFERED="1",
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def service_cpu_seconds(command: str) -> float:
    """User + system CPU time of every process named ``command`` (PostgreSQL runs one process
    per connection plus its background workers; Redis one), children reaped included."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                head, rest = file.read().rsplit(")", 1)
        except OSError:  # gone meanwhile
            continue
        if head.split("(", 1)[1] != command:
            continue
        fields = rest.split()
        total += sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    return total


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as file:
        return next(int(line.split()[1]) for line in file if line.startswith("Threads:"))


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def pg_transactions(database_url: str) -> int:
    """Transactions committed or rolled back in the benchmark's database so far (PostgreSQL's
    statistics: a backend reports its own at the latest when it disconnects)."""
    base, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        row = connection.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    return int(row[0]) if row else 0


def redis_connections(client: redis.Redis) -> int:
    """Connections the Redis server has accepted since it started (all its users)."""
    return int(client.info("stats")["total_connections_received"])


def database_reset(database_url: str) -> None:
    base, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def redis_reset(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()  # only the benchmark's own db number
    finally:
        client.close()


def manage(settings: Settings, *args: str) -> str:
    """Run ``python <args>`` in the project with the benchmark's environment; its stdout."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and modules
        [sys.executable, *args],
        cwd=ROOT,
        env=settings.environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def world_call(settings: Settings, *args: str) -> dict:
    return json.loads(manage(settings, "-m", "bench.world", *args).strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Anvil:
    process: subprocess.Popen
    port: int
    log: Path


def anvil_start(
    settings: Settings, *, loop: str, http: str, log: Path, access_log: bool, workers: int = 1
) -> Anvil:
    """Anvil under uvicorn; with ``workers`` > 1, started once every worker process has
    finished its startup (each logs it), not only the first to answer."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "portal.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--loop", loop, "--http", http,
    ]  # fmt: skip
    if not access_log:
        command.append("--no-access-log")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and the project's app
        command,
        cwd=ROOT,
        env=settings.environment(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl+C in the terminal reaches us; we stop it in order
    )
    anvil = Anvil(process=process, port=port, log=log)
    deadline = time.monotonic() + 30
    _wait_for(f"http://127.0.0.1:{port}/api/health", process, log=log, deadline=deadline)
    if workers > 1:
        deadline = time.monotonic() + 60
        while log.read_bytes().count(b"Application startup complete.") < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Anvil's {workers} workers did not start:\n{log.read_text()}")
            time.sleep(0.05)
    return anvil


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it (uvicorn's workers are its children)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                parents[int(entry)] = int(file.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    tree = [pid]
    for member in tree:
        tree += [child for child, parent in parents.items() if parent == member]
    return tree


def uvicorn_workers(pid: int) -> list[int]:
    """The worker processes of ``uvicorn --workers N`` running as ``pid``: its children that
    multiprocessing spawned (not its resource tracker)."""
    workers = []
    for child in process_tree(pid)[1:]:
        with open(f"/proc/{child}/cmdline", "rb") as file:
            if b"spawn_main" in file.read():
                workers.append(child)
    return workers


def connection_owners(ports: list[int], pids: list[int]) -> dict[tuple[int, int], int]:
    """Which of ``pids`` holds each connection accepted on one of ``ports``: (that port, the
    client's port) → the process (the socket's inode is among the process's files; the ports
    are in /proc/net/tcp or tcp6)."""
    inodes = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            if link.startswith("socket:["):
                inodes[link[8:-1]] = pid
    owners = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as file:
            for line in file.readlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                port = int(local.rsplit(":", 1)[1], 16)
                if port in ports and inode in inodes:
                    owners[port, int(remote.rsplit(":", 1)[1], 16)] = inodes[inode]
    return owners


def python_start(settings: Settings, *args: str, log: Path) -> subprocess.Popen:
    """``python <args>`` in the project with the benchmark's environment, as its own process
    (a Celery worker or beat), its output appended to ``log``."""
    with log.open("ab") as output:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            [sys.executable, *args],
            cwd=ROOT,
            env=settings.environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def profiler_start(pid: int, output: Path) -> subprocess.Popen:
    """py-spy attached to ``pid``, sampling the thread holding the GIL (its CPU time in
    Python), raw stacks into ``output``; stop it with :func:`process_stop` to write them."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        raise RuntimeError(f"--profile needs py-spy: {sys.executable} -m pip install py-spy")
    command = [
        str(py_spy), "record", "--pid", str(pid), "--gil", "--rate", str(RATE),
        "--format", "raw", "--output", str(output),
    ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - py-spy from our own virtualenv
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    time.sleep(0.5)  # let it attach
    if process.poll() is not None:
        raise RuntimeError(f"py-spy failed: {process.stderr.read().decode()}")
    return process


def _wait_for(url: str, process: subprocess.Popen, *, log: Path, deadline: float) -> None:
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"Anvil exited ({process.returncode}):\n{log.read_text()}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"Anvil did not answer {url}:\n{log.read_text()}")


def process_stop(process: subprocess.Popen, *, timeout: float = 10) -> None:
    """SIGINT (uvicorn shuts down; py-spy writes its profile), then SIGKILL if need be."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
