"""Real servers on loopback for tests: Anvil under uvicorn (its production ASGI server).

The server runs in a thread of the test process, so it uses the test database that
pytest-django created; tests that talk to it need committed data (``transactional_db``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass

import pytest
import uvicorn

from tests.waiting import eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class _Server(uvicorn.Server):
    """uvicorn's server, telling when its startup is over (``ready``): started, or not."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets=None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


def start_uvicorn(app, *, port: int | None = None) -> RunningServer:
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", loop="asyncio"
    )
    server = _Server(config)

    def serve() -> None:
        try:
            asyncio.run(server.serve())
        finally:
            server.ready.set()  # ended before or during its startup: not started

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not server.ready.wait(timeout=10) or not server.started:
        raise RuntimeError("uvicorn did not start")
    return RunningServer(url=f"http://127.0.0.1:{port}", server=server, thread=thread)


@pytest.fixture
def anvil_server(transactional_db):
    """Anvil's ASGI application served by uvicorn on a free loopback port."""
    from portal.asgi import application

    running = start_uvicorn(application)
    yield running
    running.stop()
    drop_server_connections()


def drop_server_connections() -> None:
    """The server's worker threads are gone but their database sessions linger until garbage
    collection; end them so the test database can be flushed and dropped."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@dataclass
class ServerProcesses:
    url: str
    process: object  # subprocess.Popen
    log: object  # pathlib.Path


def process_env(extra_env: dict | None = None) -> dict:
    """The environment of an Anvil process the tests start: on the test database and Redis."""
    import os

    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    database_url = (
        f"postgresql://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "DEBUG": "false",
        "SECRET_KEY": settings.SECRET_KEY,
        "API_KEY_PEPPER": settings.API_KEY_PEPPER,
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),  # may replace any of the above
    }


def start_anvil_processes(
    *, workers: int, log_path, extra_env: dict | None = None, wait_for: str = "/api/health"
):
    """Anvil under uvicorn as a separate process with ``workers`` worker processes (uvloop,
    httptools: as deployed), on the test database and Redis, so what the workers share goes
    through PostgreSQL and Redis as in production. Started once ``wait_for`` answers 200."""
    import subprocess
    import sys

    import httpx

    port = free_port()
    env = process_env(extra_env)
    command = [
        sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--loop", "uvloop",
        "--http", "httptools", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and the project's app
        command, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"Anvil exited:\n{log_path.read_text()}")
        try:
            return client.get(f"{url}{wait_for}").status_code == 200
        except httpx.HTTPError:  # not listening yet
            return False

    with httpx.Client(trust_env=False, timeout=2) as client:
        try:
            eventually(healthy, timeout=30, what=f"Anvil answering {wait_for}")
        except AssertionError as exc:
            process.kill()
            process.wait()
            raise RuntimeError(f"Anvil did not start ({exc}):\n{log_path.read_text()}") from None
    return ServerProcesses(url=url, process=process, log=log_path)


def stop_anvil_processes(server: ServerProcesses) -> None:
    """SIGINT, as an operator's Ctrl+C: uvicorn shuts its workers down gracefully."""
    import signal
    import subprocess

    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    drop_server_connections()


@pytest.fixture
def anvil_processes(transactional_db, tmp_path):
    """Anvil in two worker processes (see ``start_anvil_processes``)."""
    server = start_anvil_processes(workers=2, log_path=tmp_path / "anvil.log")
    yield server
    stop_anvil_processes(server)
