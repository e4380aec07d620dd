"""Prometheus metrics at ``/metrics``, for every server process of the host at once (README,
"Metrics").

Off (``METRICS_ENABLED`` false, the default) nothing is recorded and ``/metrics`` is an unknown
URL (404). On, a scrape gets prometheus_client's text format with:

- what every process recorded (apps/gateway/metrics.py), added up from the files in
  ``PROMETHEUS_MULTIPROC_DIR`` by prometheus_client's ``MultiProcessCollector`` (the
  answering process writes its own pending sums first);
- gauges read at the scrape from where they live: each model's slots in use and queue depth
  (Redis, as ``/api/health`` reads them), open credit holds per model, each model's operator
  switch and health-probe result (PostgreSQL; apps/catalog/probes.py writes it).

It is served on the server's own port (``METRICS_PORT`` 0), answered before Django's handler
like the probes, or on a listener of its own (``METRICS_HOST``:``METRICS_PORT``) that every
server process opens with SO_REUSEPORT, so whichever process answers gives the host's figures.

Who may scrape: with ``METRICS_TOKEN``, requests with ``Authorization: Bearer <token>`` (401
otherwise); with ``METRICS_ALLOWED_ADDRESSES``, clients whose address is in one of its networks
(403 otherwise); with both, both; with neither, loopback clients only, and none that came
through a proxy (a request with ``X-Forwarded-For``, ``Forwarded`` or ``X-Real-IP``: a proxy on
the same host connects from loopback). The address is the client's as uvicorn gives it: on
the metrics' own port the connection's; on the server's port the one a trusted proxy names in
``X-Forwarded-For`` (uvicorn's ``--forwarded-allow-ips``, 127.0.0.1 by default), else the
connection's.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import socket

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.db.models import Count

from apps.core.access_log import log_access
from apps.gateway.metrics import flush
from apps.gateway.slots import slot_stats
from lib.asgi import send_whole

logger = logging.getLogger("anvil.metrics")

METRICS_PATH = "/metrics"
# The text format every Prometheus reads (the names and labels here need none of 1.0.0's UTF-8).
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
PROXY_HEADERS = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


def is_metrics_path(scope: dict) -> bool:
    """/metrics on the server's own port (when metrics are on and have no port of their own)."""
    return (
        scope["type"] == "http"
        and scope["path"] == METRICS_PATH
        and settings.METRICS_ENABLED
        and not settings.METRICS_PORT
    )


def refusal(headers, client: tuple | None) -> tuple[int, str] | None:
    """Why a scrape from ``client`` ((host, port) of the connection) with these headers is
    refused — (status, message) — or None when it may go ahead."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_ADDRESSES
    if networks is None and not token:
        if any(name.lower() in PROXY_HEADERS for name, _ in headers):
            return 403, "Through a proxy the metrics need METRICS_TOKEN or an allow-list."
        networks = LOOPBACK
    if networks is not None and not _address_in(client, networks):
        return 403, "This address may not read the metrics (METRICS_ALLOWED_ADDRESSES)."
    if token and not _bearer_is(headers, token):
        return 401, "The metrics need Authorization: Bearer <METRICS_TOKEN>."
    return None


def _address_in(client: tuple | None, networks) -> bool:
    try:
        address = ipaddress.ip_address(client[0])
    except (TypeError, ValueError, IndexError):  # a Unix socket, no address
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener's IPv4 client
    return any(address in network for network in networks)


def _bearer_is(headers, token: str) -> bool:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, given = value.partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(
                given.strip(), token.encode()
            )
    return False


async def metrics_endpoint(scope, receive, send) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        status, headers, body = 405, [(b"allow", b"GET, HEAD")], b"Method not allowed.\n"
    elif refused := refusal(scope.get("headers", ()), scope.get("client")):
        status, message = refused
        headers, body = [], message.encode() + b"\n"
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="metrics"'))
    else:
        status, body = 200, await scrape()
        headers = [(b"content-type", CONTENT_TYPE)]
    if status != 200:
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    headers += [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    await send_whole(send, status, headers, b"" if scope["method"] == "HEAD" else body)
    if status != 200:
        log_access(scope, status)


async def scrape() -> bytes:
    """The text a scrape gets: the processes' metrics and the gauges read now."""
    models, holds = await sync_to_async(_database, thread_sensitive=False)()
    names = [model[0] for model in models or ()]
    stats = await asyncio.gather(*(slot_stats(name) for name in names), return_exceptions=True)
    slots = {name: s for name, s in zip(names, stats, strict=True) if isinstance(s, dict)}
    redis_up = all(isinstance(s, dict) for s in stats)
    if not redis_up:  # SlotsUnavailable (a QueueFull) when Redis can not be reached
        failure = next(s for s in stats if not isinstance(s, dict))
        logger.warning("metrics: the slots could not be read: %r", failure)
    return await sync_to_async(_render, thread_sensitive=False)(models, holds, slots, redis_up)


def _database() -> tuple[list | None, dict]:
    """Each model's (name, active, healthy, last check, slots, queue size) and the open holds
    per model name; (None, {}) when PostgreSQL could not be read (logged). One connection,
    closed again: this runs in a pool thread."""
    from apps.catalog.models import CatalogModel
    from apps.usage.models import Hold

    try:
        models = list(
            CatalogModel.objects.order_by("name").values_list(
                "name", "active", "healthy", "last_checked_at", "max_concurrency", "queue_size"
            )
        )
        holds = dict(Hold.objects.values_list("model__name").annotate(open=Count("id")))
    except Exception as exc:
        logger.warning("metrics: the database could not be read: %s", exc)
        return None, {}
    finally:
        connections["default"].close()
    return models, holds


def _render(models: list | None, holds: dict, slots: dict, redis_up: bool) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    flush()  # this process's pending sums, so its own requests are all in
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(_Gauges(models, holds, slots, redis_up))
    return generate_latest(registry)


class _Gauges:
    """The gauges read at the scrape (a prometheus_client custom collector)."""

    def __init__(self, models: list | None, holds: dict, slots: dict, redis_up: bool) -> None:
        self.models, self.holds, self.slots, self.redis_up = models, holds, slots, redis_up

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        def family(name: str, text: str, labels=("model",)) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=labels)

        up = family(
            "anvil_metrics_source_up",
            "Whether this scrape could read the source (postgresql, redis)",
            ("source",),
        )
        up.add_metric(["postgresql"], 0 if self.models is None else 1)
        up.add_metric(["redis"], 1 if self.redis_up else 0)
        yield up
        if self.models is None:
            return
        gauges = {
            "in_use": family("anvil_slots_in_use", "Requests a model serves now (all processes)"),
            "slots": family("anvil_slots_limit", "Requests a model serves at once (catalog)"),
            "queued": family("anvil_queue_depth", "Requests waiting in a model's queue now"),
            "queue": family("anvil_queue_limit", "Requests that may wait in a model's queue"),
            "holds": family("anvil_holds_open", "Credit holds open now (in flight, ready holds)"),
            "active": family("anvil_model_active", "The operator's switch: 1 on, 0 off"),
            "healthy": family("anvil_model_healthy", "The last health probe: 1 answered, 0 not"),
            "checked": family(
                "anvil_model_last_probe_timestamp_seconds", "When the model was last probed"
            ),
        }
        for name, active, healthy, checked, concurrency, queue_size in self.models:
            stats = self.slots.get(name)
            if stats is not None:
                gauges["in_use"].add_metric([name], stats["in_flight"])
                gauges["queued"].add_metric([name], stats["queued"])
            gauges["slots"].add_metric([name], concurrency)
            gauges["queue"].add_metric([name], queue_size)
            gauges["holds"].add_metric([name], self.holds.get(name, 0))
            gauges["active"].add_metric([name], int(active))
            gauges["healthy"].add_metric([name], int(healthy))
            if checked is not None:
                gauges["checked"].add_metric([name], checked.timestamp())
        yield from gauges.values()


# --- a port of its own -----------------------------------------------------------------------


async def _own_port_application(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == METRICS_PATH:
        await metrics_endpoint(scope, receive, send)
        return
    body = b"Not found: the metrics are at /metrics.\n"
    headers = [(b"content-type", b"text/plain; charset=utf-8"),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    await send_whole(send, 404, headers, body)


class Listener:
    """/metrics on a port of its own: uvicorn's HTTP protocol on this process's event loop,
    the socket shared with the host's other server processes through SO_REUSEPORT."""

    def __init__(self, server, sock: socket.socket) -> None:
        self.server, self.socket = server, sock

    async def stop(self) -> None:
        await self.server.shutdown(sockets=[self.socket])


async def listen() -> Listener | None:
    """With METRICS_PORT set, this process's listener on METRICS_HOST:METRICS_PORT (started);
    else None."""
    if not (settings.METRICS_ENABLED and settings.METRICS_PORT):
        return None
    import uvicorn

    host, port = settings.METRICS_HOST, settings.METRICS_PORT
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    config = uvicorn.Config(
        _own_port_application, lifespan="off", log_config=None, access_log=False,
        proxy_headers=False, timeout_graceful_shutdown=5,
    )  # fmt: skip
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    logger.info("Metrics at http://%s:%s%s", host, port, METRICS_PATH)
    return Listener(server, sock)
