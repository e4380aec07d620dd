"""Probes for load balancers and orchestrators, answered before Django's handler (portal/asgi.py).

- ``GET /healthz`` (liveness): 200 ``{"status": "alive"}`` whenever the process answers; it
  touches nothing else, so a database or Redis outage never gets a healthy process restarted.
- ``GET /readyz`` (readiness): 200 ``{"status": "ready", "checks": {...}}`` when PostgreSQL
  answers ``SELECT 1``, Redis answers ``PING`` (when ``REDIS_URL`` is set) and the catalog has
  at least one model; otherwise 503 ``{"status": "not ready", "failed": [...], "checks":
  {...}}``, naming each check that failed (the cause is logged, not shown).

No authentication, no middleware, no session and no check of the Host header (an orchestrator
probes a pod's address, which is rarely in ALLOWED_HOSTS); the answers say nothing but the
checks' names and results. A 200 is not written to the access log (a probe every few seconds
would drown it); any other answer is. ``/api/health`` (per model, for people and the CLI) is
the gateway's and stays as it is.
"""

from __future__ import annotations

import json
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from apps.core.access_log import log_access
from lib.asgi import send_whole

logger = logging.getLogger("anvil.probes")

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
PROBE_PATHS = frozenset({LIVENESS_PATH, READINESS_PATH})
# Seconds Redis may take to accept the connection and to answer PING.
REDIS_TIMEOUT = 2.0

_redis_client = None


def is_probe_path(scope: dict) -> bool:
    return scope["type"] == "http" and scope["path"] in PROBE_PATHS


def check_database() -> tuple[str | None, str | None]:
    """(PostgreSQL, catalog): None for each that passed, else what failed (the cause is
    logged). One connection, closed again: this runs in a pool thread."""
    from apps.catalog.models import CatalogModel

    connection = connections["default"]
    try:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:
            logger.warning("readiness: the database did not answer: %s", exc)
            return "unreachable", "not checked"
        try:
            loaded = CatalogModel.objects.exists()
        except Exception as exc:
            logger.warning("readiness: the catalog could not be read: %s", exc)
            return None, "unreadable"
    finally:
        connection.close()
    return None, None if loaded else "empty"


def check_redis() -> str | None:
    global _redis_client
    if not settings.REDIS_URL:
        return None  # not used: the cache is in-process, tasks run in-process
    import redis

    if _redis_client is None:
        _redis_client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
        )
    try:
        _redis_client.ping()
    except Exception as exc:
        logger.warning("readiness: Redis did not answer: %s", exc)
        return "unreachable"
    return None


def readiness() -> dict[str, str]:
    """Each check's result: "ok", "not used" (Redis without REDIS_URL), "not checked" (the
    catalog when the database is down) or what failed."""
    database, catalog = check_database()
    redis_failure = check_redis()
    return {
        "postgresql": database or "ok",
        "redis": redis_failure or ("ok" if settings.REDIS_URL else "not used"),
        "catalog": catalog or "ok",
    }


PASSED = ("ok", "not used", "not checked")


async def probes(scope, receive, send) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        status, body = 405, {"status": "method not allowed"}
    elif scope["path"] == LIVENESS_PATH:
        status, body = 200, {"status": "alive"}
    else:
        checks = await sync_to_async(readiness, thread_sensitive=False)()
        failed = [name for name, result in checks.items() if result not in PASSED]
        if failed:
            status, body = 503, {"status": "not ready", "failed": failed, "checks": checks}
        else:
            status, body = 200, {"status": "ready", "checks": checks}
    content = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send_whole(send, status, headers, b"" if scope["method"] == "HEAD" else content)
    if status != 200:
        log_access(scope, status)
