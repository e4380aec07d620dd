"""The one shared async HTTP client to the inference backends (per event loop: uvicorn runs
one loop per process), with pooled keep-alive connections and explicit timeouts."""

from __future__ import annotations

import asyncio
import weakref

import httpx
from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def backend_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        limits = httpx.Limits(
            max_connections=settings.GATEWAY_MAX_CONNECTIONS,
            max_keepalive_connections=settings.GATEWAY_MAX_CONNECTIONS,
            keepalive_expiry=30,
        )
        client = httpx.AsyncClient(limits=limits, trust_env=False)
        _clients[loop] = client
    return client


def backend_timeout() -> httpx.Timeout:
    """Connect fast or fail; between two bytes of an answer wait at most the read timeout."""
    return httpx.Timeout(
        connect=settings.GATEWAY_CONNECT_TIMEOUT,
        read=settings.GATEWAY_READ_TIMEOUT,
        write=settings.GATEWAY_CONNECT_TIMEOUT,
        pool=settings.GATEWAY_READ_TIMEOUT,
    )


def backend_headers(secret: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": "application/json"}
    if secret:
        headers["authorization"] = f"Bearer {secret}"
    return headers
