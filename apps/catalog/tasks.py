from __future__ import annotations

from celery import shared_task

from apps.catalog.probes import catalog_probe


@shared_task
def probe_backends(backend_id: int | None = None, force: bool = False) -> int:
    """Probe the catalog's backends (or one); returns how many were probed."""
    return len(catalog_probe(backend_id=backend_id, force=force))
