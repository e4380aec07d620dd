"""The ASGI entry point (uvicorn serves it).

The gateway's URLs (apps/gateway/handler.py: the OpenAI-compatible endpoints and the health
check) go to a lean handler without middleware or per-request signals; everything else to
Django's normal handler. Static files are answered by Django's ASGI static handler in front
of the latter. The probes ``/healthz`` and ``/readyz`` (portal/probes.py) are answered
before either. Behind a reverse proxy in production, the proxy can serve STATIC_ROOT
(``manage.py collectstatic``) itself. Every request to the latter gets a line in Anvil's
access log (apps/core/access_log.py); the gateway writes its own for answers that are not 2xx.
"""

from __future__ import annotations

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

django_application = ASGIStaticFilesHandler(get_asgi_application())

from apps.accounts.provider import read_at_start  # noqa: E402 (after setup)
from apps.core.access_log import logging_access  # noqa: E402
from apps.core.logs import begin_request, end_request  # noqa: E402
from apps.gateway.handler import GatewayHandler, is_gateway_path  # noqa: E402
from apps.usage.ledger import adrain  # noqa: E402
from portal.probes import is_probe_path, probes  # noqa: E402

gateway_application = GatewayHandler()
read_at_start()  # the identity provider's discovery document, before the first sign-in


async def application(scope, receive, send):
    if is_gateway_path(scope):
        token = begin_request(scope)  # the request's fields for its log lines (apps.core.logs)
        try:
            await gateway_application(scope, receive, send)
        finally:
            end_request(token)
    elif is_probe_path(scope):
        await probes(scope, receive, send)
    elif scope["type"] == "http":
        await logging_access(django_application, scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        await django_application(scope, receive, send)


async def lifespan(receive, send) -> None:
    """The ASGI lifespan: at a graceful shutdown (after the last request ended) the
    settlements still being written are waited for (apps.usage.ledger.adrain)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await adrain()
            finally:
                await send({"type": "lifespan.shutdown.complete"})
            return
