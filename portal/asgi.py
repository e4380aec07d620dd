"""The ASGI entry point (uvicorn serves it).

The gateway's URLs (apps/gateway/handler.py: the OpenAI-compatible endpoints and the health
check) go to a lean handler without middleware or per-request signals; everything else to
Django's normal handler. Static files are answered by Django's ASGI static handler in front
of the latter. The probes ``/healthz`` and ``/readyz`` (portal/probes.py) and, with metrics on
and no port of their own, ``/metrics`` (portal/metrics.py) are answered before either. Behind
a reverse proxy in production, the proxy can serve STATIC_ROOT (``manage.py collectstatic``)
itself. Every request to the latter gets a line in Anvil's access log
(apps/core/access_log.py); the gateway writes its own for answers that are not 2xx.

Every request to Django's handler has its body bounded (lib/body_limit.py): over
MAX_BODY_BYTES (a job submission, which carries inference requests: GATEWAY_MAX_BODY_BYTES) it
gets 413 before its body is read, where Django's handler would store a body of any size in a
temporary file first. The gateway bounds its own (GATEWAY_MAX_BODY_BYTES).
"""

from __future__ import annotations

import json
import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

django_application = ASGIStaticFilesHandler(get_asgi_application())

from apps.accounts.provider import read_at_start  # noqa: E402 (after setup)
from apps.api.errors import error_body  # noqa: E402
from apps.core.access_log import logging_access  # noqa: E402
from apps.core.logs import begin_request, end_request  # noqa: E402
from apps.gateway import metrics  # noqa: E402
from apps.gateway.handler import GatewayHandler, is_gateway_path  # noqa: E402
from apps.gateway.request import path_info  # noqa: E402
from apps.usage.ledger import adrain  # noqa: E402
from lib.body_limit import BodyLimit, plain_too_large  # noqa: E402
from portal.metrics import is_metrics_path, listen, metrics_endpoint  # noqa: E402
from portal.probes import is_probe_path, probes  # noqa: E402

gateway_application = GatewayHandler()

# Portal paths whose bodies are inference requests (a job per input): the gateway's limit.
INFERENCE_BODY_PATHS = frozenset({"/api/v1/jobs"})


def body_limit(scope) -> int:
    if path_info(scope) in INFERENCE_BODY_PATHS:
        return settings.GATEWAY_MAX_BODY_BYTES
    return settings.MAX_BODY_BYTES


def too_large(scope, limit: int) -> tuple[bytes, bytes]:
    """The 413's body: the API's error shape under /api/, a line of text elsewhere."""
    if not path_info(scope).startswith("/api/"):
        return plain_too_large(scope, limit)
    message = f"Request body too large (at most {limit} bytes)."
    body = error_body(status=413, message=message, code="request_too_large")
    return b"application/json", json.dumps(body).encode()


bounded_application = BodyLimit(django_application, limit=body_limit, too_large=too_large)
read_at_start()  # the identity provider's discovery document, before the first sign-in


async def application(scope, receive, send):
    if is_gateway_path(scope):
        token = begin_request(scope)  # the request's fields for its log lines (apps.core.logs)
        exchange = metrics.begin(scope)  # an inference request's, for /metrics
        try:
            await gateway_application(scope, receive, send)
        finally:
            metrics.answered(exchange)
            end_request(token)
    elif is_probe_path(scope):
        await probes(scope, receive, send)
    elif is_metrics_path(scope):
        await metrics_endpoint(scope, receive, send)
    elif scope["type"] == "http":
        await logging_access(bounded_application, scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        await django_application(scope, receive, send)


async def lifespan(receive, send) -> None:
    """The ASGI lifespan: at start, the metrics' own listener (with METRICS_PORT); at a
    graceful shutdown (after the last request ended) the settlements still being written are
    waited for (apps.usage.ledger.adrain), and the metrics' pending sums written."""
    listener = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                listener = await listen()
            except OSError as exc:
                reason = f"The metrics can not listen on port {settings.METRICS_PORT}: {exc}"
                await send({"type": "lifespan.startup.failed", "message": reason})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                if listener is not None:
                    await listener.stop()
                await adrain()
            finally:
                metrics.flush()
                await send({"type": "lifespan.shutdown.complete"})
            return
