"""Small ASGI helpers: read a body, answer JSON, stream server-sent events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from devbackend import wire

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_BODY = 32 * 1024 * 1024
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class DroppedConnection(Exception):
    """Raised after the response started: uvicorn then closes the connection abruptly."""


class ClientGone(Exception):
    """The client disconnected while the request body was being read."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def quiet_dropped_connections() -> None:
    """Keep uvicorn from logging a traceback for every deliberate drop fault."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


async def read_body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise wire.ApiError("Request body too large.", status=413)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_bytes(
    send: Send, *, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = JSON_HEADERS
) -> None:
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + length})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, obj: Any, *, status: int = 200) -> None:
    await send_bytes(send, status=status, body=wire.encode(obj))


async def send_error(send: Send, error: wire.ApiError) -> None:
    headers = list(JSON_HEADERS)
    if error.status == 429:
        headers.append((b"retry-after", b"1"))
    await send_bytes(send, status=error.status, body=wire.encode(error.body()), headers=headers)


async def sse_start(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})


async def sse_send(send: Send, data: bytes, *, last: bool = False) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": not last})


async def run_until_disconnect(receive: Receive, work: Awaitable[None]) -> bool:
    """Run ``work``; cancel it if the client goes away first. True if it was cancelled."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        task.result()  # re-raises DroppedConnection and real errors
        return False
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return True


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
