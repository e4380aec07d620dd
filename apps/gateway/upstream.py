"""The one shared client to the inference backends (per event loop: uvicorn runs one loop per
process), with pooled keep-alive connections and explicit timeouts from the settings: a
``lib.backend_http.BackendClient`` (why it is ours and not aiohttp or httpx: its docstring).

Idle connections are dropped after 4 s, before the 5 s after which uvicorn (the usual
backend server) closes them, so a request is rarely sent on a connection the backend is
closing; the client retries once when that happens anyway (a pooled connection failed before
any byte of answer).
"""

from __future__ import annotations

import asyncio
import weakref

from django.conf import settings

from lib.aio import at_loop_shutdown
from lib.backend_http import BackendClient, BackendResponse

KEEPALIVE_SECONDS = 4

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BackendClient] = (
    weakref.WeakKeyDictionary()
)


def backend_client() -> BackendClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.closed:
        client = BackendClient(
            max_connections=settings.GATEWAY_MAX_CONNECTIONS, keepalive=KEEPALIVE_SECONDS
        )
        _clients[loop] = client
        at_loop_shutdown(loop, client.close)  # connections can not outlive their loop
    return client


async def backend_post(url: str, *, body: bytes, secret: str) -> BackendResponse:
    """POST and return the response with its head read (the body still to read; the caller
    releases or closes it). Connect fast or fail; between two reads of an answer wait at most
    the read timeout (also the longest wait for a free pooled connection)."""
    return await backend_client().post(
        url,
        body=body,
        secret=secret,
        connect_timeout=settings.GATEWAY_CONNECT_TIMEOUT,
        read_timeout=settings.GATEWAY_READ_TIMEOUT,
    )
