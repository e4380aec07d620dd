"""LOG_FORMAT=json (apps/core/logs.py): Anvil under uvicorn writes one JSON object per line, with
a request's id, key prefix, model, status and duration, and never its body or its key."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from apps.core.logs import _BEARER_KEY
from apps.keys.services import api_key_create, management_key_create
from tests.servers import start_anvil_processes, stop_anvil_processes
from tests.waiting import eventually
from tests.world import make_world

PROMPT = "tell nobody: the combination is 4711"


@pytest.fixture
def anvil_logging(transactional_db, tmp_path):
    """Start Anvil (one worker process) with LOG_FORMAT as given and the access log on; yields
    the server and a function reading its output."""
    started = []

    def start(**extra_env):
        log_path = tmp_path / "anvil.log"
        server = start_anvil_processes(
            workers=1, log_path=log_path, extra_env={"ACCESS_LOG": "true", **extra_env}
        )
        started.append(server)
        return server, lambda: log_path.read_text().splitlines()

    yield start
    for server in started:
        stop_anvil_processes(server)


def requests_of(lines: list[str], path: str) -> list[dict]:
    records = [json.loads(line) for line in lines]
    return [r for r in records if r["logger"] == "anvil.access" and path in r["message"]]


def access_line(output, path: str) -> dict:
    """The one access-log line of the request to ``path`` (written just after its answer)."""
    eventually(lambda: requests_of(output(), path), timeout=10, what=f"a line for {path}")
    [line] = requests_of(output(), path)
    return line


def test_json_lines_carry_a_gateway_requests_fields_but_not_its_prompt(anvil_logging):
    world = make_world()
    key, secret = api_key_create(grant=world.grant, owner=world.bob, name="logged")
    server, output = anvil_logging(LOG_FORMAT="json")

    with httpx.Client(trust_env=False, timeout=10) as client:
        answer = client.post(
            f"{server.url}/api/v1/chat/completions",
            headers={"Authorization": f"Bearer {secret}"},
            json={"model": "no-such-model", "messages": [{"role": "user", "content": PROMPT}]},
        )
    assert answer.status_code == 404

    access = access_line(output, "/api/v1/chat/completions")
    lines = output()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert access["level"] == "INFO"
    assert access["status"] == 404
    assert access["model"] == "no-such-model"
    assert access["key_prefix"] == key.display_prefix
    assert re.fullmatch(r"[0-9a-f]{32}", access["request_id"])
    assert 0 < access["duration_ms"] < 10_000
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", access["time"])
    # Django's warning about the same answer is marked with the same request
    [warning] = [r for r in records if r["logger"] == "django.request"]
    assert warning["request_id"] == access["request_id"]
    assert warning["status"] == 404
    # never the prompt, never the secret
    text = "\n".join(lines)
    assert PROMPT not in text
    assert secret not in text
    assert secret[len(key.display_prefix) :] not in text
    # uvicorn's own lines are JSON too
    assert any(r["logger"].startswith("uvicorn") for r in records)


def test_json_lines_carry_a_portal_requests_fields(anvil_logging):
    world = make_world()
    management, secret = management_key_create(owner=world.alice, name="logged")
    server, output = anvil_logging(LOG_FORMAT="json")

    with httpx.Client(trust_env=False, timeout=10) as client:
        page = client.get(f"{server.url}/accounts/login/", headers={"X-Request-ID": "lb-7f3a.1"})
        api = client.post(
            f"{server.url}/api/v1/management/api_keys/create",
            headers={"Authorization": f"Bearer {secret}"},
            json={},
        )
    assert page.status_code == 200
    assert api.status_code == 400

    login = access_line(output, "/accounts/login/")
    assert login["request_id"] == "lb-7f3a.1"  # the proxy's, when it sends one
    assert login["status"] == 200
    assert login["duration_ms"] > 0
    assert "key_prefix" not in login and "model" not in login
    created = access_line(output, "/api/v1/management/api_keys/create")
    assert created["key_prefix"] == management.display_prefix
    assert created["status"] == 400
    assert created["request_id"] != login["request_id"]
    assert secret not in "\n".join(output())


def test_text_stays_the_default(anvil_logging):
    server, output = anvil_logging()

    with httpx.Client(trust_env=False, timeout=10) as client:
        client.get(f"{server.url}/no-such-page/")

    eventually(
        lambda: any(
            re.fullmatch(r'127\.0\.0\.1:\d+ - "GET /no-such-page/ HTTP/1\.1" 404', line)
            for line in output()
        ),
        timeout=10,
        what="the access log's text line",
    )
    assert not any(line.startswith("{") for line in output())


@pytest.mark.django_db
def test_the_logs_idea_of_a_key_is_the_keys_own(world):
    """apps.core.logs repeats the shape of a key's secret (apps.core sits below apps.keys)."""
    key, secret = api_key_create(grant=world.grant, owner=world.bob, name="shape")
    management, management_secret = management_key_create(owner=world.alice, name="shape")

    assert _BEARER_KEY.fullmatch(f"Bearer {secret}").group(1) == key.display_prefix
    assert (
        _BEARER_KEY.fullmatch(f"Bearer {management_secret}").group(1) == management.display_prefix
    )
    assert _BEARER_KEY.fullmatch(f"Bearer {secret}x") is None


def test_a_celery_worker_writes_json_lines_too(transactional_db, tmp_path):
    import signal
    import subprocess
    import sys

    from tests.servers import process_env

    log_path = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--loglevel", "info",
         "--pool", "solo"],
        env=process_env({"LOG_FORMAT": "json"}),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def ready() -> bool:
            assert worker.poll() is None, log_path.read_text()
            return " ready." in log_path.read_text()

        eventually(ready, timeout=30, what="the worker ready")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    lines = [line for line in log_path.read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert any(r["logger"].startswith("celery") and "ready" in r["message"] for r in records)
