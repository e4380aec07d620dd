"""Real servers on loopback for tests: Anvil under uvicorn (its production ASGI server).

The server runs in a thread of the test process, so it uses the test database that
pytest-django created; tests that talk to it need committed data (``transactional_db``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass

import pytest
import uvicorn


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


def start_uvicorn(app, *, port: int | None = None) -> RunningServer:
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
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
