"""/metrics after a mix of requests, as an operator's Prometheus reads it (issue 19).

Two independent Anvil servers (uvicorn, one worker each, production settings) share one
PROMETHEUS_MULTIPROC_DIR and one metrics port (METRICS_PORT, opened by both with SO_REUSEPORT),
as the workers of one host do. Requests go alternately to each, through the ``openai`` client:
answered chats and streams, an embedding, refusals for want of credits (429) and of a model
(404), a backend that fails (502) and one that is busy (its 429), a stream whose client leaves,
and a backend that reports more tokens than were held (a ``capped`` ledger row). The scrape
then has each counter moved by exactly the right amount (the tokens and credits equal to the
ledger's), each process wrote its own share, and the scrape is their sum. The gauges read at
scrape time follow a stream held open (its slot and hold) and the models' health.
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from django.db import connection
from django.db.models import Sum

from apps.catalog.models import Backend, CatalogModel, Kind
from apps.keys.services import api_key_create
from apps.usage.models import LedgerEntry
from tests.metrics_scrape import per_process, scrape, value
from tests.servers import free_port, start_anvil_processes, stop_anvil_processes
from tests.waiting import eventually
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "chat/completions"
HI = [{"role": "user", "content": "Hi"}]
OK, STREAMS, QUOTA, BROKEN = 6, 4, 3, 2


class LyingBackend(BaseHTTPRequestHandler):
    """Answers every chat with usage far beyond the max_tokens it was sent."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        message = {"role": "assistant", "content": "Hi there"}
        body = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": "liar",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 100_000, "total_tokens": 100_009},
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def liar():
    server = ThreadingHTTPServer(("127.0.0.1", 0), LyingBackend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def start_servers(tmp_path, env: dict) -> list:
    """Two servers, started side by side (each takes a few seconds to boot)."""
    servers, failures = [None, None], []

    def start(index: int) -> None:
        try:
            servers[index] = start_anvil_processes(
                workers=1, log_path=tmp_path / f"anvil-{index}.log", extra_env=env
            )
        except BaseException as exc:  # re-raised below, after both tried
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        for server in servers:
            if server is not None:
                stop_anvil_processes(server)
        raise failures[0]
    return servers


def add_model(world, name: str, upstream: str, backend=None, **fields) -> CatalogModel:
    model = CatalogModel.objects.create(
        name=name, backend=backend or world.backend, upstream_model=upstream, kind=Kind.CHAT,
        prompt_price=Decimal("0.5"), completion_price=Decimal("1.5"), context_window=8192,
        **fields,
    )  # fmt: skip
    world.grant.allowed_models.add(model)
    return model


def test_a_scrape_counts_a_mix_of_requests_of_two_processes(world, devbackend, liar, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("two server processes share the ledger through PostgreSQL")
    world.backend.base_url = f"{devbackend}/v1"
    world.backend.save()
    world.grant.allowed_models.add(world.embed_model)
    add_model(world, "broken-chat", "org/chat-small@fault=error-500")
    add_model(world, "busy-chat", "org/chat-small@fault=error-429")
    add_model(world, "stalling-chat", "org/chat-small@fault=stall-after:2")
    add_model(world, "resting-chat", "org/chat-small", healthy=False)
    lying = Backend.objects.create(name="liar", base_url=liar)
    add_model(world, "lying-chat", "liar", backend=lying)
    _, secret = api_key_create(grant=world.grant, owner=world.bob, name="metrics")
    _, poor = api_key_create(
        grant=world.grant, owner=world.bob, name="poor", total_limit=Decimal("0.000001")
    )
    directory, port = tmp_path / "metrics", free_port()
    env = {
        "METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "METRICS_PORT": str(port), "METRICS_ALLOWED_ADDRESSES": "127.0.0.1",
    }  # fmt: skip
    servers = start_servers(tmp_path, env)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        clients = [
            openai.OpenAI(base_url=f"{s.url}/api/v1", api_key=secret, max_retries=0)
            for s in servers
        ]
        poor_clients = [c.with_options(api_key=poor) for c in clients]
        held_open = _send_the_mix(clients, poor_clients)

        # A stream held open: its slot and its hold, read at the scrape from Redis and
        # PostgreSQL (whichever process answers), then given back when its client leaves.
        def open_stream_seen():
            samples = scrape(metrics_url)
            assert value(samples, "anvil_slots_in_use", model="stalling-chat") == 1
            assert value(samples, "anvil_holds_open", model="stalling-chat") == 1

        eventually(open_stream_seen, timeout=10)
        held_open.close()
        wait_for_settlements(timeout=15)

        def all_counted():
            samples = scrape(metrics_url)
            total = sum(v for (name, _), v in samples.items() if name == "anvil_requests_total")
            assert total == OK + STREAMS + QUOTA + BROKEN + 5, total
            return samples

        samples = eventually(all_counted, timeout=10, what="every process's requests flushed")
        with httpx.Client(trust_env=False, timeout=10) as client:
            main_port = client.get(f"{servers[0].url}/metrics")
    finally:
        for server in servers:
            stop_anvil_processes(server)

    _check_requests(samples)
    _check_charges(samples)
    _check_latencies(samples)
    _check_gauges(samples)
    assert main_port.status_code == 404  # the metrics have a port of their own

    # Each process counted its own share (requests alternated), and the scrape is the sum.
    shares = per_process(directory)
    assert len(shares) == 2, shares.keys()
    for share in shares.values():
        assert value(share, "anvil_requests_total", **_ok("chat-small")) > 0
    for key, scraped in samples.items():
        if key[0].startswith(("anvil_requests", "anvil_tokens", "anvil_backend_errors")):
            assert sum(share.get(key, 0) for share in shares.values()) == scraped, key


def _send_the_mix(clients, poor_clients):
    """Every kind of request, alternately to each server; the stalled stream is returned open."""
    for i in range(OK):
        answer = clients[i % 2].chat.completions.create(model="chat-small", messages=HI)
        assert answer.choices[0].message.content
    for i in range(STREAMS):
        stream = clients[i % 2].chat.completions.create(
            model="chat-small", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        assert [chunk for chunk in stream]
    for i in range(QUOTA):
        with pytest.raises(openai.RateLimitError) as refused:
            poor_clients[i % 2].chat.completions.create(model="chat-small", messages=HI)
        assert refused.value.code == "insufficient_quota"
    for i in range(BROKEN):
        with pytest.raises(openai.InternalServerError) as failed:
            clients[i % 2].chat.completions.create(model="broken-chat", messages=HI)
        assert failed.value.status_code == 502
    with pytest.raises(openai.RateLimitError) as busy:
        clients[0].chat.completions.create(model="busy-chat", messages=HI)
    assert busy.value.code == "backend_rate_limited"
    assert clients[1].embeddings.create(model="embed-small", input="Hi").data
    with pytest.raises(openai.NotFoundError):  # labelled with no model: names stay the catalog's
        clients[1].chat.completions.create(model="no-such-model", messages=HI)
    clients[0].chat.completions.create(model="lying-chat", messages=HI, max_tokens=5)
    stalled = clients[1].chat.completions.create(model="stalling-chat", messages=HI, stream=True)
    assert [next(stalled), next(stalled)]  # the role chunk and the first token
    return stalled


def _ok(model: str, endpoint: str = CHAT) -> dict:
    return {"model": model, "endpoint": endpoint, "status_class": "2xx", "outcome": "ok"}


def _check_requests(samples) -> None:
    expected = {
        ("chat-small", CHAT, "2xx", "ok"): OK + STREAMS,
        ("chat-small", CHAT, "4xx", "refused"): QUOTA,
        ("broken-chat", CHAT, "5xx", "backend_error"): BROKEN,
        ("busy-chat", CHAT, "4xx", "backend_error"): 1,
        ("stalling-chat", CHAT, "2xx", "client_disconnected"): 1,
        ("lying-chat", CHAT, "2xx", "ok"): 1,
        ("embed-small", "embeddings", "2xx", "ok"): 1,
        ("", CHAT, "4xx", "refused"): 1,
    }
    found = {
        tuple(dict(labels)[k] for k in ("model", "endpoint", "status_class", "outcome")): v
        for (name, labels), v in samples.items()
        if name == "anvil_requests_total"
    }
    assert found == expected
    errors = {
        (dict(labels)["backend"], dict(labels)["kind"]): v
        for (name, labels), v in samples.items()
        if name == "anvil_backend_errors_total"
    }
    assert errors == {("local", "error"): BROKEN, ("local", "rate_limited"): 1}
    capped = {
        dict(labels)["model"]: v
        for (name, labels), v in samples.items()
        if name == "anvil_ledger_capped_rows_total"
    }
    assert capped == {"lying-chat": 1}
    assert LedgerEntry.objects.filter(capped=True).count() == 1


def _check_charges(samples) -> None:
    """Tokens and credits by model: what the ledger has, exactly."""
    rows = LedgerEntry.objects.values("model__name").annotate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), credits=Sum("credits")
    )
    assert len(rows) == 6  # every admitted model (the 429s were never admitted)
    for row in rows:
        model = row["model__name"]
        assert value(samples, "anvil_tokens_total", model=model, type="prompt") == row["prompt"]
        completion = value(samples, "anvil_tokens_total", model=model, type="completion")
        assert completion == row["completion"]
        credits = value(samples, "anvil_credits_charged_total", model=model)
        assert credits == pytest.approx(float(row["credits"]), rel=1e-12, abs=0), model
    assert value(samples, "anvil_tokens_total", model="chat-small", type="completion") > 0


def _check_latencies(samples) -> None:
    """A request forwarded to a backend is in the total and added histograms once; a stream
    that sent its first event in the time-to-first-token one."""
    forwarded = {
        ("chat-small", CHAT): OK + STREAMS, ("broken-chat", CHAT): BROKEN,
        ("busy-chat", CHAT): 1, ("stalling-chat", CHAT): 1, ("lying-chat", CHAT): 1,
        ("embed-small", "embeddings"): 1,
    }  # fmt: skip
    for (model, endpoint), count in forwarded.items():
        labels = {"model": model, "endpoint": endpoint}
        total = value(samples, "anvil_request_duration_seconds_count", **labels)
        added = value(samples, "anvil_added_duration_seconds_count", **labels)
        assert (total, added) == (count, count), model
        inf = value(samples, "anvil_request_duration_seconds_bucket", **labels, le="+Inf")
        assert inf == count
        total_sum = value(samples, "anvil_request_duration_seconds_sum", **labels)
        added_sum = value(samples, "anvil_added_duration_seconds_sum", **labels)
        assert 0 < added_sum <= total_sum, model
    first = {
        (dict(labels)["model"]): v
        for (name, labels), v in samples.items()
        if name == "anvil_time_to_first_token_seconds_count"
    }
    assert first == {"chat-small": STREAMS, "stalling-chat": 1}


def _check_gauges(samples) -> None:
    assert value(samples, "anvil_slots_in_use", model="stalling-chat") == 0
    assert value(samples, "anvil_holds_open", model="stalling-chat") == 0
    assert value(samples, "anvil_slots_limit", model="chat-small") == 4
    assert value(samples, "anvil_model_healthy", model="resting-chat") == 0
    assert value(samples, "anvil_model_healthy", model="chat-small") == 1
    assert value(samples, "anvil_model_active", model="resting-chat") == 1
    assert value(samples, "anvil_metrics_source_up", source="postgresql") == 1
    assert value(samples, "anvil_metrics_source_up", source="redis") == 1


def test_uvicorn_workers_share_the_metrics_port_and_add_up(world, devbackend, tmp_path):
    """uvicorn --workers 2: each worker opens the metrics port (SO_REUSEPORT) at its start,
    and whichever answers a scrape counts every worker's requests."""
    if connection.vendor != "postgresql":
        pytest.skip("two server processes share the ledger through PostgreSQL")
    world.backend.base_url = f"{devbackend}/v1"
    world.backend.save()
    _, secret = api_key_create(grant=world.grant, owner=world.bob, name="workers")
    directory, port, log = tmp_path / "metrics", free_port(), tmp_path / "anvil.log"
    env = {
        "METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "METRICS_PORT": str(port),
    }  # fmt: skip
    key = ("anvil_requests_total", frozenset(_ok("chat-small").items()))
    server = start_anvil_processes(workers=2, log_path=log, extra_env=env)
    sent = 0
    try:
        eventually(lambda: log.read_text().count("Application startup complete.") == 2,
                   timeout=30, what="both workers started")  # fmt: skip
        body = {"model": "chat-small", "messages": HI, "max_tokens": 4}
        headers = {"Authorization": f"Bearer {secret}"}
        limits = httpx.Limits(max_keepalive_connections=0)  # a connection each: any worker
        with httpx.Client(trust_env=False, timeout=30, limits=limits) as client:

            def both_served() -> bool:
                nonlocal sent
                for _ in range(10):
                    url = f"{server.url}/api/v1/chat/completions"
                    assert client.post(url, json=body, headers=headers).status_code == 200
                    sent += 1
                served = [share for share in per_process(directory).values() if share.get(key)]
                return len(served) == 2

            eventually(both_served, timeout=30, what="a request served by each worker")

        def counted():
            samples = scrape(f"http://127.0.0.1:{port}/metrics")
            assert samples.get(key) == sent
            return samples

        samples = eventually(counted, timeout=10, what="both workers' requests flushed")
    finally:
        stop_anvil_processes(server)

    assert "startup failed" not in log.read_text()
    shares = per_process(directory)
    assert len(shares) == 2
    assert sum(share[key] for share in shares.values()) == samples[key] == sent
