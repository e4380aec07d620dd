"""Backend health probes: does each backend of the catalog answer?

A probe is ``GET <base_url>/models`` (``/v1/models`` on vLLM, Ollama, llama.cpp server, TGI)
with the backend's secret: it spends no tokens, and it fails exactly when a request would fail
to reach the server or be refused by it. Only the catalog's own base URLs are probed, with
short timeouts and no redirects followed. The result goes to every model of the backend:
``healthy`` and ``last_checked_at``. The operator's ``active`` switch is never touched; the
gateway serves a model only when it is active and healthy.

Each backend is claimed before it is probed by a conditional UPDATE of its models'
``last_checked_at`` (``… WHERE last_checked_at IS NULL OR last_checked_at <= now - gap``), so
two probe runs at the same moment (a duplicated beat, two workers) probe it once.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import httpx
from django.db.models import Q
from django.utils import timezone

from apps.catalog.models import Backend, CatalogModel

logger = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(5.0, connect=2.0)
# A backend probed less than this long ago is left alone (the beat probes every 30 s).
PROBE_GAP = dt.timedelta(seconds=20)


@dataclass(frozen=True)
class ProbeResult:
    backend: str
    healthy: bool
    detail: str


def backend_probe(*, backend: Backend, client: httpx.Client) -> tuple[bool, str]:
    """Ask the backend for its model list: (healthy, what happened)."""
    secret = backend.secret()
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    try:
        response = client.get(f"{backend.base_url.rstrip('/')}/models", headers=headers)
    except httpx.HTTPError as exc:
        return False, f"no answer ({type(exc).__name__})"
    if response.status_code != 200:
        return False, f"HTTP {response.status_code}"
    try:
        listed = response.json().get("data")
    except (ValueError, AttributeError):
        listed = None
    if not isinstance(listed, list):
        return False, "the answer is not an OpenAI model list"
    return True, "ok"


def backend_claim(*, backend: Backend, now: dt.datetime, force: bool = False) -> bool:
    """Mark the backend's models as being checked now; False when a probe ran within
    ``PROBE_GAP`` (unless ``force``), so that this run leaves the backend alone."""
    models = CatalogModel.objects.filter(backend=backend)
    if not force:
        due = Q(last_checked_at__isnull=True) | Q(last_checked_at__lte=now - PROBE_GAP)
        models = models.filter(due)
    return models.update(last_checked_at=now) > 0


def _record(backend: Backend, healthy: bool, detail: str, now: dt.datetime) -> None:
    models = CatalogModel.objects.filter(backend=backend)
    changed = models.exclude(healthy=healthy).exists()
    models.update(healthy=healthy, last_checked_at=now)
    if changed and not healthy:
        logger.warning("Backend %s is down: %s; its models are unavailable.", backend, detail)
    elif changed:
        logger.info("Backend %s is up again.", backend)


def catalog_probe(
    *, backend_id: int | None = None, now: dt.datetime | None = None, force: bool = False
) -> list[ProbeResult]:
    """Probe every backend that serves a catalog model (or only ``backend_id``) that is due,
    and record the result on its models. Returns what was probed."""
    now = now or timezone.now()
    backends = Backend.objects.filter(models__isnull=False).distinct().order_by("name")
    if backend_id is not None:
        backends = backends.filter(pk=backend_id)
    results = []
    with httpx.Client(timeout=TIMEOUT, trust_env=False, follow_redirects=False) as client:
        for backend in backends:
            if not backend_claim(backend=backend, now=now, force=force):
                continue
            healthy, detail = backend_probe(backend=backend, client=client)
            _record(backend, healthy, detail, now)
            results.append(ProbeResult(backend=backend.name, healthy=healthy, detail=detail))
    return results
