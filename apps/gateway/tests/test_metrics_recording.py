"""The gateway's metrics are written to prometheus_client in batches (apps/gateway/metrics.py):
what a flush writes is what recording each fact on its own would have written.

Here prometheus_client keeps its values in memory (no PROMETHEUS_MULTIPROC_DIR in the test
process); test_metrics.py reads them from the files of real server processes.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from prometheus_client import Counter, Histogram

from apps.gateway import metrics

DURATIONS = [0.0004, 0.0005, 0.0015, 0.0015, 0.004, 2.0, 59.0, 4000.0]


def samples(child) -> dict:
    """A metric's samples but the time it was made."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in child._samples()
        if s.name != "_created"
    }


def test_a_flushed_histogram_equals_one_observed_value_by_value():
    name = "anvil_added_duration_seconds"
    labels = (f"model-{uuid.uuid4().hex}", "chat/completions")
    with metrics._lock:
        for seconds in DURATIONS:
            metrics._observe(name, labels, seconds)
    metrics.flush()
    direct = Histogram("direct", "d", buckets=metrics.ADDED_BUCKETS, registry=None)
    for seconds in DURATIONS:
        direct.observe(seconds)

    flushed = metrics.prometheus_metrics()[name].labels(*labels)

    assert samples(flushed) == samples(direct)
    assert samples(direct)[("_bucket", (("le", "0.0005"),))] == 2  # a bound is its bucket's


def test_a_flush_adds_up_counts_and_exact_credits():
    model = f"model-{uuid.uuid4().hex}"
    with metrics._lock:
        for _ in range(3):
            metrics._add("anvil_credits_charged", (model,), Decimal("0.000001"))
            metrics._add("anvil_tokens", (model, "prompt"), 7)
    metrics.flush()
    metrics.flush()  # nothing pending: nothing added twice

    written = metrics.prometheus_metrics()
    credits = written["anvil_credits_charged"].labels(model)._value.get()
    tokens = written["anvil_tokens"].labels(model, "prompt")._value.get()

    assert credits == float(Decimal("0.000003"))
    assert tokens == 21
    assert isinstance(written["anvil_tokens"], Counter)
