"""Jobs tests run for real: Anvil under uvicorn on loopback, the development backend as its own
process, PostgreSQL and Redis, and the jobs either on real Celery worker processes taking them
from Redis (``celery`` mode) or on the web process's jobs thread (``in_process`` mode, as
``make run`` runs them). The ``jobs`` fixture is parametrised over both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from apps.catalog.models import CatalogModel, Kind
from apps.jobs.queue import jobs_stop
from apps.keys.models import ApiKey
from apps.keys.services import api_key_create
from apps.usage.models import Hold
from apps.usage.reconcile import counters_reconcile
from devbackend.testing import start_devbackend, stop_devbackend
from tests.waiting import eventually
from tests.world import World

ROOT = Path(__file__).resolve().parents[3]
TPS = 20  # the slow model's pace: tokens per second


@pytest.fixture(scope="session")
def devbackend():
    backend = start_devbackend()
    yield backend.url
    stop_devbackend(backend.process)


def database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    user, host, port = db["USER"] or "postgres", db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgresql://{user}{password}@{host}:{port}/{db['NAME']}"


@dataclass
class Workers:
    """Celery worker processes on one queue of the tests' Redis, using the test database."""

    queue: str
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self) -> subprocess.Popen:
        number = len(self.processes)
        environ = {
            name: os.environ[name]
            for name in ("PATH", "SECRET_KEY", "API_KEY_PEPPER", "TIME_ZONE")
            if name in os.environ
        }
        environ.update(DATABASE_URL=database_url(), REDIS_URL=settings.REDIS_URL, DEBUG="false")
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo",
            "--queues", self.queue, "--hostname", f"{self.queue}-{number}@localhost",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with (self.logs / f"worker-{number}.log").open("w") as output:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and celery
                command, cwd=ROOT, env=environ, stdout=output, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """As the machine would: SIGKILL, no clean-up of any kind."""
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.logs.glob("worker-*.log")))


@dataclass
class Jobs:
    mode: str
    world: World
    url: str  # Anvil's /api/v1
    backend_url: str
    key: ApiKey
    secret: str
    workers: Workers | None

    def api(self, secret: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, trust_env=False, timeout=30,
            headers={"Authorization": f"Bearer {secret or self.secret}"},
        )  # fmt: skip

    def submit(self, inputs: list[str], *, model: str = "chat-slow", secret=None, **params):
        command = {"inputs": inputs, **params}
        body = {
            "app": "gridrepublic:text-inference",
            "commandLine": json.dumps(command),
            "tag": model,
        }
        with self.api(secret) as api:
            answer = api.post("/jobs", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()["ids"]

    def status(self, *ids: str, secret=None) -> dict:
        with self.api(secret) as api:
            answer = api.get("/jobs/" + ",".join(ids))
        assert answer.status_code == 200, answer.text
        return answer.json()["jobs"]

    def job(self, job_id: str) -> dict:
        return self.status(job_id)[job_id]

    def add_model(self, name: str, *, upstream: str, **fields) -> CatalogModel:
        defaults = {
            "kind": Kind.CHAT, "prompt_price": Decimal("0.5"),
            "completion_price": Decimal("1.5"), "context_window": 8192,
        }  # fmt: skip
        model = CatalogModel.objects.create(
            name=name, backend=self.world.backend, upstream_model=upstream,
            **{**defaults, **fields},
        )  # fmt: skip
        self.world.grant.allowed_models.add(model)
        return model

    def settled(self) -> None:
        """No hold is open and the counters equal the ledger."""
        eventually(lambda: not Hold.objects.exists(), timeout=10, what="every hold ended")
        assert counters_reconcile() == []


@pytest.fixture(params=["celery", "in_process"])
def jobs(request, world, anvil_server, devbackend, settings, tmp_path):
    mode = request.param
    workers = None
    if mode == "celery":
        if not settings.REDIS_URL or connection.vendor != "postgresql":
            pytest.skip("needs REDIS_URL and PostgreSQL")
        workers = Workers(queue=f"anvil-test-{uuid.uuid4().hex[:12]}", logs=tmp_path)
        settings.JOBS_IN_PROCESS = False
        settings.JOBS_QUEUE = workers.queue
    else:
        settings.JOBS_IN_PROCESS = True
        settings.REDIS_URL = None  # as `make run`: the model slots are this process's own
    world.backend.base_url = f"{devbackend}/v1"
    world.backend.save()
    key, secret = api_key_create(grant=world.grant, owner=world.bob, name="jobs-tests")
    context = Jobs(mode, world, f"{anvil_server.url}/api/v1", devbackend, key, secret, workers)
    context.add_model("chat-slow", upstream=f"org/chat-slow@tokens-per-second={TPS}")
    if workers is not None:
        workers.start()
    try:
        yield context
    finally:
        if workers is not None:
            workers.stop()
        jobs_stop()


def echo(words: int) -> str:
    """A prompt whose reply starts with ``words`` known words (the dev backend's ECHO)."""
    return "ECHO: " + " ".join(f"w{i}" for i in range(words))
