"""A lean ASGI handler for the gateway's URLs (portal/asgi.py routes them here).

The same URLconf and the same plain async views, without what costs a thread hop per request
and that these views do not need:

- no middleware: every ``MiddlewareMixin`` middleware runs its hooks through
  ``sync_to_async`` under ASGI. The views authenticate by API key, are csrf-exempt, use no
  session, user or messages. What the middleware did that still matters is done here:
  the Host header is checked against ALLOWED_HOSTS, non-streaming answers get a
  Content-Length, and every answer gets the security headers (nosniff, Referrer-Policy,
  X-Frame-Options).
- no ``request_started``/``request_finished`` signals: their receivers are synchronous (each
  ``asend``/``close`` is a thread hop). What they do for us is close stale database
  connections of the thread that serves the request; the gateway never queries the database
  on the event loop's thread — its database work runs in worker threads (``sync_to_async(...,
  thread_sensitive=False)``) that manage their own connections — so skipping them is safe.
  (They also reset DEBUG's query log; DEBUG is off in production.)

Django's disconnect handling is kept: the view runs in a task next to one listening for
``http.disconnect``, and the view's task is cancelled when the client goes away (the
streaming relay relies on it to close the backend stream and settle).
"""

from __future__ import annotations

import asyncio
import io
import logging
from contextlib import aclosing

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import Resolver404, get_resolver, set_script_prefix

from apps.core.aio import complete

logger = logging.getLogger(__name__)

GATEWAY_PATHS = frozenset(
    {
        "/api/v1/chat/completions",
        "/api/v1/completions",
        "/api/v1/embeddings",
        "/api/v1/models",
        "/api/v1/models-plgrid-format",
        "/api/health",
    }
)


_VIEWS: dict[str, object] | None = None


def _views() -> dict[str, object]:
    """path_info → view of the gateway's URLs, resolved once through the URLconf (the same
    views ``reverse`` knows), so a request costs a dict lookup instead of walking the
    resolver's patterns."""
    global _VIEWS
    if _VIEWS is None:
        resolver, views = get_resolver(), {}
        for path in GATEWAY_PATHS:
            try:
                views[path] = resolver.resolve(path).func
            except Resolver404:
                continue
        _VIEWS = views
    return _VIEWS


def is_gateway_path(scope: dict) -> bool:
    if scope["type"] != "http":
        return False
    path = scope["path"]
    root = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root) :]
    return path in GATEWAY_PATHS


class GatewayHandler(ASGIHandler):
    """Django's ASGIHandler with an empty middleware chain and no per-request signals."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._checked_get_response)

    async def _checked_get_response(self, request):
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware did (DisallowedHost → 400)
        view = _views().get(request.path_info)
        if view is None:  # a URLconf without the gateway's paths: Django's own way
            return await self._get_response_async(request)
        response = await view(request)
        self.check_response(response, view)
        return response

    async def __call__(self, scope, receive, send):
        async with ThreadSensitiveContext():
            await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request():
            response = await self.run_get_response(request)
            _finish_headers(response)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client left while we were sending
            return response

        # As in ASGIHandler.handle: a disconnect cancels the view's task.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            pass
        else:
            _close(response)
            settling = getattr(response, "settling", None)
            if settling is not None:
                # The request's settlement, started as its answer went out (relay.py): the
                # request ends with it, so a graceful shutdown (which waits for requests to
                # end) does not cut it off.
                await complete(settling)
        body_file.close()

    async def read_body(self, receive):
        """The body in memory, at most GATEWAY_MAX_BODY_BYTES + 1 bytes: reading stops there
        (the view answers 413), so a client can not make Anvil store a body of any size, as
        Django's handler would, in a file that rolls over to disk (chunked bodies declare no
        length to refuse them by)."""
        limit = settings.GATEWAY_MAX_BODY_BYTES + 1
        body, size = io.BytesIO(), 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            chunk = message.get("body", b"")
            if chunk and size < limit:
                body.write(chunk[: limit - size])
                size += len(chunk)
            if not message.get("more_body", False) or size >= limit:
                break
        body.seek(0)
        return body

    async def listen_for_disconnect(self, receive):
        """Django's, except that what is left of a body read no further (over the limit) is
        dropped as it arrives instead of being an invalid message."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            if message["type"] != "http.request":
                raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")

    async def send_response(self, response, send):
        if response.streaming:
            if response.is_async:
                await self._send_stream(response, send)
            else:
                await super().send_response(response, send)
            return
        # One message for the headers and one for the body (Django's chunking into
        # 64 KiB messages buys nothing here: uvicorn writes the body to the socket either way).
        start = {"type": "http.response.start", "status": response.status_code}
        start["headers"] = _headers(response)
        await send(start)
        await send({"type": "http.response.body", "body": response.content})

    async def _send_stream(self, response, send):
        """Each event goes out in one message as it comes (events are far below chunk_size)."""
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": _headers(response),
            }
        )
        async with aclosing(aiter(response)) as content:
            async for part in content:
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body"})


SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
)


def _finish_headers(response) -> None:
    headers = response.headers
    for name, value in SECURITY_HEADERS:
        headers.setdefault(name, value)
    if not response.streaming and "Content-Length" not in headers:
        headers["Content-Length"] = str(len(response.content))


def _headers(response) -> list[tuple[bytes, bytes]]:
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return headers


def _close(response) -> None:
    """HttpResponse.close without the request_finished signal."""
    for closer in response._resource_closers:
        try:
            closer()
        except Exception:
            logger.exception("closing a response failed")
    response.closed = True
