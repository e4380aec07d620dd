"""The production path of background work: the beat schedule names real tasks, and a real
``celery -A portal worker`` process takes a task from Redis and runs it against the database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.usage.reconcile import counters_reconcile
from apps.usage.tasks import reconcile_counters
from portal.celery import app
from tests.spending import local, spend_at
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent


def test_it_schedules_only_registered_tasks_and_drops_stale_runs():
    app.loader.import_default_modules()
    for name, entry in app.conf.beat_schedule.items():
        assert entry["task"] in app.tasks, name
        assert entry["options"]["expires"] > 0, name


def database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgresql://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def worker(transactional_db, tmp_path):
    """A Celery worker process on its own queue of the tests' Redis, using the test database."""
    if not settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.skip("needs REDIS_URL and PostgreSQL")
    queue = f"anvil-test-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "worker.log"
    environ = {
        name: os.environ[name]
        for name in ("PATH", "SECRET_KEY", "API_KEY_PEPPER", "TIME_ZONE")
        if name in os.environ
    }
    environ.update(DATABASE_URL=database_url(), REDIS_URL=settings.REDIS_URL, DEBUG="false")
    command = [
        sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo",
        "--queues", queue, "--hostname", f"{queue}@localhost", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log.open("w") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and the celery module
            command, cwd=ROOT, env=environ, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield queue, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        connection.close()


def make_key(world) -> ApiKey:
    return ApiKey.objects.create(
        grant=world.grant, owner=world.bob, name="worker-key", lookup_prefix="workerkey001",
        digest="x" * 64, expires_at=local(2030, 1, 1),
    )  # fmt: skip


def test_a_worker_process_runs_a_task_from_redis(world, worker):
    queue, log = worker
    spend_at(local(2026, 10, 3, 12), key=make_key(world), model=world.chat_model)
    Grant.objects.filter(pk=world.grant.pk).update(credits_used=Decimal("99"))  # a mismatch
    assert not app.conf.task_always_eager  # a real broker: nothing runs in this process
    reconcile_counters.apply_async(queue=queue)

    def repaired() -> None:
        used = Grant.objects.get(pk=world.grant.pk).credits_used
        assert used == Decimal("0.002"), f"counter not repaired ({used}); log:\n{log.read_text()}"

    def succeeded() -> str:
        text = log.read_text()
        assert "succeeded" in text, f"the task not reported done; worker log:\n{text}"
        return text

    eventually(repaired, timeout=60)  # the worker starts (a few seconds), then runs the task
    assert counters_reconcile() == []
    text = eventually(succeeded, timeout=10)
    assert "Counter grant" in text and "repaired" in text
