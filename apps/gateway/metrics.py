"""Prometheus metrics of the gateway, recorded in each process off the request's path.

A request's facts go into this process's pending sums (two dicts under one lock); a thread
writes them to prometheus_client's metrics every ``FLUSH_SECONDS``, and so does the process that
answers a scrape, first. In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) those metrics are
memory-mapped files, one set per process, that a scrape adds up (portal/metrics.py), so every
worker of a host reports as one. Each write to them takes a lock and packs a value into the
file; made per request they would cost several times the pending sums (``python -m
bench.metrics``), made once a second they cost one write per series that moved.

Each fact is recorded once, where it is known:

- ``begin`` / ``answered`` (portal/asgi.py, around the gateway's handler): an inference
  request's arrival and its end, with its status ``responded`` (handler.py):
  ``anvil_requests_total`` and the three latency histograms;
- ``forwarded`` (relay.py): the request went to its backend; ``first_token`` (relay.py): a
  stream's first event goes out;
- ``ended`` (``Admission.end``, once on every exit of an admitted request): tokens and credits
  charged and a backend's failure, recorded with the request's answer, or at once for an
  admission without one (a job, the playground);
- the ledger's ``ledger_row_capped`` signal: capped ledger rows.

The gauges that live in Redis and PostgreSQL (slots, queues, holds, model health) are read at
scrape time instead (portal/metrics.py). With METRICS_ENABLED off nothing is recorded.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from bisect import bisect_left
from contextvars import ContextVar
from decimal import Decimal

from django.conf import settings

from apps.core.logs import current_request
from apps.gateway.catalog import cached_catalog
from apps.usage.models import LedgerEntry, Outcome
from apps.usage.signals import ledger_row_capped

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
INF = float("inf")
# Seconds; added by Anvil is mostly around a millisecond, the rest up to a long stream.
ADDED_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                 2.5, 5.0, 10.0, 30.0, 60.0, INF)  # fmt: skip
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
                   120.0, 300.0, 600.0, 1800.0, INF)  # fmt: skip

# name (as exposed, without _total) → (help, label names)
COUNTERS = {
    "anvil_requests": (
        "Inference requests, by model (empty: none of the catalog), endpoint, status class "
        "(none: the client left before an answer) and outcome (the ledger's; refused: never "
        "admitted)",
        ("model", "endpoint", "status_class", "outcome"),
    ),
    "anvil_tokens": ("Tokens charged, by model and type (prompt, completion)", ("model", "type")),
    "anvil_credits_charged": ("Credits charged, by model", ("model",)),
    "anvil_backend_errors": (
        "Requests a backend failed, by backend and kind (error, timeout, rate_limited, "
        "unavailable, rejected)",
        ("backend", "kind"),
    ),
    "anvil_ledger_capped_rows": (
        "Ledger rows marked capped (the real cost exceeded the hold), by model",
        ("model",),
    ),
}
HISTOGRAMS = {
    "anvil_request_duration_seconds": (
        "Requests forwarded to a backend: from arrival to the end of the answer",
        LATENCY_BUCKETS,
    ),
    "anvil_added_duration_seconds": (
        "Requests forwarded to a backend: their time not spent waiting for the backend "
        "(parsing, key, credit hold, slot and any wait in the model's queue, relaying)",
        ADDED_BUCKETS,
    ),
    "anvil_time_to_first_token_seconds": (
        "Streams: from arrival to the first event sent to the client",
        LATENCY_BUCKETS,
    ),
}
HISTOGRAM_LABELS = ("model", "endpoint")

# Inference paths → the endpoint label.
ENDPOINTS = {
    "/api/v1/chat/completions": "chat/completions",
    "/api/v1/completions": "completions",
    "/api/v1/embeddings": "embeddings",
    "/api/v1/responses": "responses",
}
REFUSED = "refused"
CLIENT_DISCONNECTED = str(Outcome.CLIENT_DISCONNECTED)
# A backend's failure (GatewayError code, else the ledger outcome) → the kind label.
FAILURE_KINDS = {
    "backend_error": "error",
    "backend_timeout": "timeout",
    "backend_rate_limited": "rate_limited",
    "backend_unavailable": "unavailable",
    "backend_rejected": "rejected",
}


class Exchange:
    """What is known of one inference request so far (monotonic seconds)."""

    __slots__ = ("admission", "arrived", "ended", "endpoint", "failure", "first", "sent",
                 "status", "token")  # fmt: skip

    def __init__(self, endpoint: str) -> None:
        self.arrived = time.monotonic()
        self.endpoint = endpoint
        self.admission = self.failure = self.status = None
        self.sent = self.first = self.ended = None


_current: ContextVar[Exchange | None] = ContextVar("anvil_metrics_exchange", default=None)
ENABLED: bool = settings.METRICS_ENABLED  # read once: a request pays for no settings lookup
STATUS_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")

_lock = threading.Lock()
_counts: dict[tuple[str, tuple], int | float | Decimal] = {}
_observed: dict[tuple[str, tuple], list] = {}  # each bucket's count, then the sum
_model_names: dict[int, str] = {}  # catalog id → name, for the capped rows
_flusher: threading.Thread | None = None


def begin(scope: dict) -> Exchange | None:
    """An inference request arrived (None for anything else, or with metrics off)."""
    if not ENABLED or scope["method"] != "POST":
        return None
    path = scope["path"]
    root = scope.get("root_path")
    endpoint = ENDPOINTS.get((path.removeprefix(root) if root else path).rstrip("/"))
    if endpoint is None:
        return None
    exchange = Exchange(endpoint)
    exchange.token = _current.set(exchange)
    return exchange


def responded(status: int) -> None:
    """The request's answer starts with ``status``."""
    exchange = _current.get()
    if exchange is not None:
        exchange.status = status


def forwarded() -> None:
    exchange = _current.get()
    if exchange is not None:
        exchange.sent = time.monotonic()


def first_token() -> None:
    exchange = _current.get()
    if exchange is not None and exchange.first is None:
        exchange.first = time.monotonic()


def ended(admission, exc: BaseException | None) -> None:
    """An admitted request ended (``Admission.end``, after it set ``billed`` and ``charged``):
    what it was charged is recorded with the request's answer, or now without one (a job)."""
    if not ENABLED:
        return
    exchange = _current.get()
    failure = FAILURE_KINDS.get(getattr(exc, "code", None))
    _model_names[admission.model.id] = admission.model.name  # before its settlement is written
    if exchange is None:
        with _lock:
            _charged(admission, failure)
        if _flusher is None:
            _start_flusher()
    else:
        exchange.admission, exchange.failure = admission, failure
        exchange.ended = time.monotonic()


def _charged(admission, failure: str | None) -> None:
    """Tokens, credits and a backend's failure (under ``_lock``)."""
    usage, model = admission.billed, admission.model
    name = model.name
    _add("anvil_tokens", (name, "prompt"), usage.prompt_tokens)
    _add("anvil_tokens", (name, "completion"), usage.completion_tokens)
    _add("anvil_credits_charged", (name,), Decimal(admission.charged["credits_charged"]))
    failure = failure or FAILURE_KINDS.get(usage.outcome)
    if failure is not None:
        _add("anvil_backend_errors", (model.backend, failure), 1)


def answered(exchange: Exchange | None) -> None:
    """The request is over: its answer sent, or its client gone."""
    if exchange is None:
        return
    _current.reset(exchange.token)
    now = time.monotonic()
    status, admission = exchange.status, exchange.admission
    if admission is not None:
        model, outcome = admission.model.name, str(admission.billed.outcome)
    else:
        model, outcome = _catalog_name(), REFUSED if status else CLIENT_DISCONNECTED
    labels = (model, exchange.endpoint)
    with _lock:
        if admission is not None:
            _charged(admission, exchange.failure)
        status_class = STATUS_CLASSES[status // 100] if status else "none"
        _add("anvil_requests", (model, exchange.endpoint, status_class, outcome), 1)
        if exchange.sent is not None:
            total = now - exchange.arrived
            waited = (exchange.ended or now) - exchange.sent
            _observe("anvil_request_duration_seconds", labels, total)
            _observe("anvil_added_duration_seconds", labels, max(total - waited, 0.0))
            if exchange.first is not None:
                first = exchange.first - exchange.arrived
                _observe("anvil_time_to_first_token_seconds", labels, first)
    if _flusher is None:
        _start_flusher()


def _catalog_name() -> str:
    """The model a refused request named, when it is one of the catalog's (labels stay few)."""
    request, catalog = current_request(), cached_catalog()
    name = request.model if request is not None else None
    return name if catalog is not None and name in catalog.models else ""


def _capped(sender, hold, entry, **kwargs) -> None:
    if ENABLED:
        with _lock:
            _add("anvil_ledger_capped_rows", (_model_names.get(hold.model_id, ""),), 1)
        if _flusher is None:
            _start_flusher()


ledger_row_capped.connect(_capped, sender=LedgerEntry, dispatch_uid="gateway-metrics-capped")


def _add(name: str, labels: tuple, amount) -> None:
    key = (name, labels)
    _counts[key] = _counts.get(key, 0) + amount


def _observe(name: str, labels: tuple, seconds: float) -> None:
    buckets = HISTOGRAMS[name][1]
    key = (name, labels)
    row = _observed.get(key)
    if row is None:
        row = _observed[key] = [0] * len(buckets) + [0.0]
    row[bisect_left(buckets, seconds)] += 1
    row[-1] += seconds


# --- writing to prometheus_client ------------------------------------------------------------

_metrics: dict | None = None
_metrics_lock = threading.Lock()


def prometheus_metrics() -> dict:
    """This process's prometheus_client metrics, made on first use (not in the default
    registry: a scrape reads every process's files, portal/metrics.py)."""
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            from prometheus_client import Counter, Histogram

            made = {
                name: Counter(name, text, labels, registry=None)
                for name, (text, labels) in COUNTERS.items()
            }
            for name, (text, buckets) in HISTOGRAMS.items():
                made[name] = Histogram(name, text, HISTOGRAM_LABELS, buckets=buckets, registry=None)
            _metrics = made
    return _metrics


def flush() -> None:
    """Write the pending sums to prometheus_client's metrics (in multiprocess mode this
    process's files): a counter's increment, a histogram's per-bucket counts and sum."""
    global _counts, _observed
    with _lock:
        counts, _counts = _counts, {}
        observed, _observed = _observed, {}
    if not counts and not observed:
        return
    metrics = prometheus_metrics()
    for (name, labels), amount in counts.items():
        metrics[name].labels(*labels).inc(float(amount))
    for (name, labels), row in observed.items():
        child = metrics[name].labels(*labels)
        # Histogram.observe() adds 1 to one bucket and the value to the sum; these are the
        # same values it writes (prometheus_client keeps each bucket's own count), n at once.
        for bucket, count in zip(child._buckets, row, strict=False):
            if count:
                bucket.inc(count)
        child._sum.inc(row[-1])


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        try:
            flush()
        except Exception:
            logger.exception("Writing the metrics failed")


def _start_flusher() -> None:
    """This process's flushing thread (once; the callers check ``_flusher`` first)."""
    global _flusher
    with _lock:
        if _flusher is not None:
            return
        _flusher = threading.Thread(target=_flush_forever, name="metrics-flush", daemon=True)
        _flusher.start()
    atexit.register(flush)


def _after_fork() -> None:
    """A forked child (Celery's pool) starts with nothing pending and no flusher of its own:
    what the parent had pending is the parent's to write."""
    global _lock, _counts, _observed, _flusher
    _lock, _counts, _observed, _flusher = threading.Lock(), {}, {}, None


os.register_at_fork(after_in_child=_after_fork)
