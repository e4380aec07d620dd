"""Who may read /metrics (portal/metrics.py): off by default (404), a bearer token, an
allow-list of addresses, loopback only when neither is set; and the settings that say so.

The servers are Anvil under uvicorn (one worker) on the test database and Redis, with metrics
on the server's own port; apps/gateway/tests/test_metrics.py has them on a port of their own.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from portal import env
from portal.metrics import refusal
from tests.metrics_scrape import parse
from tests.servers import free_port, process_env, start_anvil_processes, stop_anvil_processes
from tests.test_probes import load_demo_catalog

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def start_anvil(transactional_db, tmp_path):
    """Start Anvil (one worker process) with metrics on and these variables on top."""
    started = []

    def start(**extra_env):
        server = start_anvil_processes(
            workers=1,
            log_path=tmp_path / f"anvil-{len(started)}.log",
            extra_env={
                "METRICS_ENABLED": "true",
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{len(started)}"),
                **extra_env,
            },
            wait_for="/healthz",
        )
        started.append(server)
        return server

    yield start
    for server in started:
        stop_anvil_processes(server)


def get(url: str, **headers) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.get(url, headers=headers)


def test_metrics_are_off_by_default(anvil_server):
    answer = get(f"{anvil_server.url}/metrics")

    assert answer.status_code == 404


def test_a_token_lets_in_only_who_bears_it(start_anvil):
    server = start_anvil(METRICS_TOKEN=TOKEN)
    url = f"{server.url}/metrics"

    missing = get(url)
    wrong = get(url, Authorization=f"Bearer {TOKEN[:-1]}x")
    right = get(url, Authorization=f"Bearer {TOKEN}")

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert "METRICS_TOKEN" in missing.text and TOKEN not in missing.text
    assert wrong.status_code == 401
    assert right.status_code == 200
    samples = parse(right.text)
    assert samples[("anvil_metrics_source_up", frozenset({("source", "postgresql")}))] == 1
    with httpx.Client(trust_env=False, timeout=10) as client:
        posted = client.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert posted.status_code == 405


def test_an_allow_list_refuses_other_addresses(start_anvil):
    server = start_anvil(METRICS_ALLOWED_ADDRESSES="10.0.0.0/8, 192.0.2.7")

    answer = get(f"{server.url}/metrics")

    assert answer.status_code == 403
    assert "METRICS_ALLOWED_ADDRESSES" in answer.text


def test_without_token_or_list_loopback_may_scrape(start_anvil):
    server = start_anvil()

    answer = get(f"{server.url}/metrics")

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


@pytest.mark.parametrize("down", ["postgresql", "redis"])
def test_a_scrape_says_which_source_it_could_not_read(start_anvil, down):
    """The gauges of the store that is down are missing, the rest is served (never a 500)."""
    load_demo_catalog()
    if down == "postgresql":
        database = process_env()["DATABASE_URL"].rsplit("/", 1)[1]
        closed = {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/{database}"}
    else:
        closed = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/5"}
    server = start_anvil(**closed)

    answer = get(f"{server.url}/metrics")

    assert answer.status_code == 200
    samples = parse(answer.text)
    up = {dict(labels)["source"]: v for (name, labels), v in samples.items()
          if name == "anvil_metrics_source_up"}  # fmt: skip
    assert up == {"postgresql": float(down != "postgresql"), "redis": float(down != "redis")}
    in_use = [key for key in samples if key[0] == "anvil_slots_in_use"]
    healthy = [key for key in samples if key[0] == "anvil_model_healthy"]
    assert not in_use  # from Redis, or for the models PostgreSQL names
    assert bool(healthy) == (down == "redis")


def _networks(*items: str) -> tuple:
    return tuple(ipaddress.ip_network(item) for item in items)


@pytest.mark.parametrize(
    ("token", "networks", "client", "header", "expected"),
    [
        # neither: loopback only (IPv4, IPv6, IPv4 through a dual-stack listener)
        ("", None, ("127.0.0.1", 5), None, None),
        ("", None, ("::1", 5), None, None),
        ("", None, ("::ffff:127.0.0.1", 5), None, None),
        ("", None, ("10.1.2.3", 5), None, 403),
        ("", None, None, None, 403),  # a Unix socket: no address to judge
        ("", None, ("127.0.0.1", 5), "X-Forwarded-For: 203.0.113.9", 403),  # a local proxy's
        ("", None, ("127.0.0.1", 5), "Forwarded: for=203.0.113.9", 403),
        # a token: any address with it, none without
        (TOKEN, None, ("203.0.113.9", 5), f"Authorization: Bearer {TOKEN}", None),
        (TOKEN, None, ("203.0.113.9", 5), f"Authorization: bearer {TOKEN}", None),
        (TOKEN, None, ("127.0.0.1", 5), None, 401),
        (TOKEN, None, ("127.0.0.1", 5), f"Authorization: Basic {TOKEN}", 401),
        (TOKEN, None, ("127.0.0.1", 5), f"Authorization: Bearer {TOKEN}x", 401),
        # a list: its networks only
        ("", _networks("10.0.0.0/8"), ("10.9.9.9", 5), None, None),
        ("", _networks("10.0.0.0/8"), ("127.0.0.1", 5), None, 403),
        ("", _networks("2001:db8::/32"), ("2001:db8::1", 5), None, None),
        # both: both
        (TOKEN, _networks("10.0.0.0/8"), ("10.9.9.9", 5), f"Authorization: Bearer {TOKEN}", None),
        (TOKEN, _networks("10.0.0.0/8"), ("10.9.9.9", 5), None, 401),
        (TOKEN, _networks("10.0.0.0/8"), ("192.0.2.1", 5), f"Authorization: Bearer {TOKEN}", 403),
    ],
)
def test_who_may_scrape(settings, token, networks, client, header, expected):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_ADDRESSES = token, networks
    headers = [(b"host", b"anvil")]
    if header is not None:
        name, _, content = header.partition(": ")
        headers.append((name.encode(), content.encode()))

    refused = refusal(headers, client)

    assert (refused and refused[0]) == expected


def test_it_reads_the_metrics_settings(tmp_path):
    networks = env.env_networks("A", environ={"A": "10.0.0.0/8, 192.0.2.7 ,::1"})
    assert [str(n) for n in networks] == ["10.0.0.0/8", "192.0.2.7/32", "::1/128"]
    assert env.env_networks("A", environ={"A": " "}) is None
    with pytest.raises(ImproperlyConfigured, match="A must be IP addresses or networks"):
        env.env_networks("A", environ={"A": "10.0.0.0/8, anvil.example.org"})
    assert env.env_port("P", 0, environ={"P": "9100"}) == 9100
    with pytest.raises(ImproperlyConfigured, match="P must be a port number"):
        env.env_port("P", 0, environ={"P": "70000"})
    assert env.env_token("T", environ={}) == ""
    with pytest.raises(ImproperlyConfigured, match="T must be at least 16 characters"):
        env.env_token("T", environ={"T": "short"})
    made = tmp_path / "made" / "here"
    assert env.env_metrics_dir("D", environ={"D": str(made)}) == str(made)
    assert made.is_dir()
    with pytest.raises(ImproperlyConfigured, match="METRICS_ENABLED needs D"):
        env.env_metrics_dir("D", environ={})


def test_metrics_on_without_their_directory_stop_the_start():
    environ = process_env({"METRICS_ENABLED": "true"})
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**environ, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert started.returncode != 0
    assert "METRICS_ENABLED needs PROMETHEUS_MULTIPROC_DIR" in started.stderr
