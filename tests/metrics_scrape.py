"""Reading /metrics in tests: a scrape as {(sample name, labels): value}, and what each server
process wrote in the multiprocess directory on its own."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(url: str, **headers: str) -> Samples:
    with httpx.Client(trust_env=False, timeout=10) as client:
        answer = client.get(url, headers=headers)
    assert answer.status_code == 200, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(answer.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the scrape has none (a series nothing moved yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def per_process(directory: Path) -> dict[str, Samples]:
    """pid → what that process wrote (prometheus_client's files are named ``<kind>_<pid>.db``)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    pids = {path.stem.rpartition("_")[2] for path in directory.glob("*.db")}
    found = {}
    for pid in pids:
        with tempfile.TemporaryDirectory() as alone:
            for path in directory.glob(f"*_{pid}.db"):
                shutil.copy(path, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)
            found[pid] = parse(generate_latest(registry).decode())
    return found
