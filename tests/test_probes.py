"""/healthz and /readyz (portal/probes.py), as a load balancer sees them: Anvil under uvicorn,
on the test database and Redis, or with PostgreSQL or Redis pointed at a closed loopback port."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from apps.catalog.services import catalog_load, catalog_parse
from tests.servers import (
    free_port,
    process_env,
    start_anvil_processes,
    stop_anvil_processes,
)

DEMO_CATALOG = Path(__file__).resolve().parent.parent / "demo" / "catalog.yaml"


def load_demo_catalog() -> None:
    catalog_load(data=catalog_parse(text=DEMO_CATALOG.read_text()))


@pytest.fixture
def start_anvil(transactional_db, tmp_path):
    """Start Anvil (one worker process) with these variables on top of the test's; stopped at
    the end. It counts as started once /healthz answers: liveness needs nothing else."""
    started = []

    def start(**extra_env):
        server = start_anvil_processes(
            workers=1,
            log_path=tmp_path / f"anvil-{len(started)}.log",
            extra_env=extra_env,
            wait_for="/healthz",
        )
        started.append(server)
        return server

    yield start
    for server in started:
        stop_anvil_processes(server)


def get(url: str) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.get(url)


def test_ready_when_postgresql_redis_and_the_catalog_are_there(start_anvil):
    load_demo_catalog()
    server = start_anvil()

    alive = get(f"{server.url}/healthz")
    ready = get(f"{server.url}/readyz")

    assert alive.status_code == 200
    assert alive.json() == {"status": "alive"}
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"postgresql": "ok", "redis": "ok", "catalog": "ok"},
    }


def test_not_ready_while_the_catalog_is_empty(start_anvil):
    server = start_anvil()

    ready = get(f"{server.url}/readyz")

    assert ready.status_code == 503
    assert ready.json()["failed"] == ["catalog"]
    assert ready.json()["checks"]["catalog"] == "empty"


def test_not_ready_without_postgresql_but_alive(start_anvil):
    load_demo_catalog()
    database = process_env()["DATABASE_URL"].rsplit("/", 1)[1]
    server = start_anvil(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/{database}")

    ready = get(f"{server.url}/readyz")

    assert ready.status_code == 503
    assert ready.json() == {
        "status": "not ready",
        "failed": ["postgresql"],
        "checks": {"postgresql": "unreachable", "redis": "ok", "catalog": "not checked"},
    }
    assert get(f"{server.url}/healthz").status_code == 200


def test_not_ready_without_redis_but_alive(start_anvil):
    load_demo_catalog()
    server = start_anvil(REDIS_URL=f"redis://127.0.0.1:{free_port()}/5")

    ready = get(f"{server.url}/readyz")

    assert ready.status_code == 503
    assert ready.json() == {
        "status": "not ready",
        "failed": ["redis"],
        "checks": {"postgresql": "ok", "redis": "unreachable", "catalog": "ok"},
    }
    assert get(f"{server.url}/healthz").status_code == 200


def test_probes_need_no_key_and_no_allowed_host(start_anvil):
    """An orchestrator probes the pod's address, which ALLOWED_HOSTS rarely names."""
    load_demo_catalog()
    server = start_anvil()

    with httpx.Client(trust_env=False, timeout=10) as client:
        alive = client.get(f"{server.url}/healthz", headers={"Host": "10.1.2.3:8000"})
        ready = client.get(f"{server.url}/readyz", headers={"Host": "10.1.2.3:8000"})

    assert (alive.status_code, ready.status_code) == (200, 200)
