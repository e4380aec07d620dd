"""What recording the gateway's metrics costs a request (apps/gateway/metrics.py).

    .venv/bin/python -m bench.metrics [--requests 100000]

In prometheus_client's multiprocess mode (a fresh temporary PROMETHEUS_MULTIPROC_DIR), with
``timeit`` (the best of 5 rounds): a ``Counter.inc()`` and a ``Histogram.observe()`` of a child
whose labels are looked up once, and with the lookup (``labels(...)``) each time; what writing
one request's metrics straight to prometheus_client would cost (4 counters, 3 observations);
then Anvil's way: one request's calls as the gateway makes them (``begin``, ``responded``,
``forwarded``, ``first_token``, ``ended``, ``answered``) into the pending sums, and the flush
that writes a second's worth of them (``--requests`` spread over 4 models and 2 endpoints)
to the files, per request of that second. Needs no database, Redis or server.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import timeit
from types import SimpleNamespace


def best_us(statement, number: int) -> float:
    return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
    os.environ.update(METRICS_ENABLED="true", DEBUG="true")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from prometheus_client import Counter, Histogram

    from apps.gateway import metrics

    n = args.requests
    counter = Counter("bench_c", "c", ["model", "endpoint", "status", "outcome"], registry=None)
    histogram = Histogram("bench_h", "h", ["model", "endpoint"], registry=None,
                          buckets=metrics.ADDED_BUCKETS)  # fmt: skip
    child_c, child_h = counter.labels("m", "chat", "2xx", "ok"), histogram.labels("m", "chat")
    figures = {
        "Counter.inc(), child kept": best_us(child_c.inc, n),
        "Counter.labels(...).inc()": best_us(lambda: counter.labels("m", "c", "2", "o").inc(), n),
        "Histogram.observe(), child kept": best_us(lambda: child_h.observe(0.0012), n),
        "Histogram.labels(...).observe()": best_us(
            lambda: histogram.labels("m", "chat").observe(0.0012), n
        ),
    }

    def direct() -> None:
        counter.labels("m", "chat", "2xx", "ok").inc()
        for _ in range(3):
            counter.labels("m", "chat", "tokens", "x").inc(7)
            histogram.labels("m", "chat").observe(0.0012)

    figures["a request written straight to the files"] = best_us(direct, n // 10)

    models = [f"model-{i}" for i in range(4)]
    admissions = [_admission(model, i) for i, model in enumerate(models)]
    scope = {"type": "http", "method": "POST", "path": "/api/v1/chat/completions"}
    count = iter(range(10**12))

    def one_request() -> None:
        exchange = metrics.begin(scope)
        metrics.forwarded()
        metrics.first_token()
        metrics.ended(admissions[next(count) % 4], None)
        metrics.responded(200)
        metrics.answered(exchange)

    metrics._flusher = True  # flushed here, not by the thread meanwhile
    figures["Anvil: a request's calls, into the pending sums"] = best_us(one_request, n)
    metrics.flush()
    for _ in range(n):
        one_request()
    started = time.perf_counter()
    metrics.flush()
    flush_us = (time.perf_counter() - started) * 1e6
    figures[f"Anvil: one flush of {n} requests' sums, in all"] = flush_us
    figures["Anvil: that flush, per request"] = flush_us / n
    print(f"This machine now: a million Python additions in {_additions_ms():.0f} ms")
    for name, us in figures.items():
        print(f"{name:52} {us:8.3f} µs")


def _additions_ms() -> float:
    started, total = time.perf_counter(), 0
    for i in range(1_000_000):
        total += i
    return (time.perf_counter() - started) * 1000


def _admission(model: str, model_id: int):
    served = SimpleNamespace(id=model_id, name=model, backend="local")
    billed = SimpleNamespace(prompt_tokens=12, completion_tokens=16, outcome="ok")
    return SimpleNamespace(model=served, billed=billed, charged={"credits_charged": "0.000030"})


if __name__ == "__main__":
    main()
