"""A lean ASGI handler for the gateway's URLs (portal/asgi.py routes them here).

The same URLconf and the same plain async views, without what costs time per request and
that these views do not need:

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
  (They also reset DEBUG's query log; DEBUG is off in production.) For the same reason no
  ``ThreadSensitiveContext``: nothing here runs ``thread_sensitive=True``.
- no Django ASGIRequest: the views get a ``GatewayRequest`` (request.py), which reads the scope
  only for what they use. An exception still becomes Django's answer (DisallowedHost → 400,
  anything else → 500, logged as Django logs them), and an answer of 400 or more is logged as
  Django logs it (``django.request``), both with Django's full request.
- an access log line (apps/core/access_log.py) only for an answer that is not 2xx: every
  answered request is in the usage ledger.

A disconnect cancels the view, as in Django's handler: the view runs in the handler's own task
and one task listens for ``http.disconnect`` (the streaming relay relies on the cancellation to
close the backend stream and settle).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from contextlib import aclosing

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import response_for_exception
from django.http import HttpResponseBadRequest
from django.urls import Resolver404, get_resolver, set_script_prefix
from django.utils.log import log_response

from apps.core.access_log import log_access
from apps.gateway.request import GatewayRequest, path_info
from lib.aio import complete

logger = logging.getLogger(__name__)
request_logger = logging.getLogger("django.request")

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
    """A gateway URL the URLconf has (any other goes to Django's handler)."""
    return scope["type"] == "http" and path_info(scope) in _views()


class _Exchange:
    """What the disconnect listener and the handler share about one request."""

    __slots__ = ("client_left",)

    def __init__(self) -> None:
        self.client_left = False


class GatewayHandler(ASGIHandler):
    """Django's ASGIHandler's parts for the gateway's views, without middleware, signals or
    Django's request."""

    def load_middleware(self, is_async: bool = False) -> None:
        pass  # none: see the module's docstring

    async def __call__(self, scope, receive, send):
        try:
            body = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            request = GatewayRequest(scope, body)
        except UnicodeDecodeError:  # a query string that is not UTF-8: 400, as from Django
            request_logger.warning(
                "Bad Request (UnicodeDecodeError)", exc_info=True, extra={"status_code": 400}
            )
            await self.send_response(HttpResponseBadRequest(), send)
            log_access(scope, 400)
            return
        exchange = _Exchange()
        task = asyncio.current_task()
        listener = asyncio.create_task(self.listen_for_disconnect(receive, task, exchange))
        response = None
        try:
            response = await self.get_response_async(request)
            await self.send_response(response, send)
        except asyncio.CancelledError:
            if not exchange.client_left:
                raise  # not ours to swallow (the server is shutting down)
        finally:
            listener.cancel()  # no await before this: the listener can not cancel us later
            if exchange.client_left:
                task.uncancel()
        if response is not None:
            _close(response)
            if not 200 <= response.status_code < 300:
                log_access(scope, response.status_code)  # a 2xx answer is in the ledger
            settling = getattr(response, "settling", None)
            if settling is not None:
                # The request's settlement, started as its answer went out (relay.py): the
                # request ends with it, so a graceful shutdown (which waits for requests to
                # end) does not cut it off.
                await complete(settling)
        if listener.done() and not listener.cancelled():
            listener.result()  # an invalid message from the server: raised as Django does

    async def get_response_async(self, request: GatewayRequest):
        """The view's answer; an exception becomes Django's answer to it (as Django's
        convert_exception_to_response), an error is logged as Django logs it."""
        try:
            request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware did (DisallowedHost → 400)
            view = _views().get(request.path_info)
            if view is None:
                raise Resolver404({"path": request.path_info})
            response = await view(request)
            self.check_response(response, view)
        except Exception as exc:
            set_script_prefix(get_script_prefix(request.scope))  # for the error page's URLs
            response = await sync_to_async(response_for_exception, thread_sensitive=False)(
                request.django_request(), exc
            )
        if response.status_code >= 400:
            log = functools.partial(
                log_response,
                "%s: %s",
                response.reason_phrase,
                request.path,
                response=response,
                request=request.django_request(),
            )
            if response.status_code >= 500:
                await sync_to_async(log, thread_sensitive=False)()  # ERROR may mail the admins
            else:
                log()  # a WARNING: stream handlers only, no thread hop per refused request
        return response

    async def read_body(self, receive) -> bytes:
        """The body, at most GATEWAY_MAX_BODY_BYTES + 1 bytes: reading stops there (the view
        answers 413), so a client can not make Anvil store a body of any size, as Django's
        handler would, in a file that rolls over to disk (chunked bodies declare no length to
        refuse them by)."""
        limit = settings.GATEWAY_MAX_BODY_BYTES + 1
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            chunk = message.get("body", b"")
            if chunk and size < limit:
                chunks.append(chunk[: limit - size])
                size += len(chunk)
            if not message.get("more_body", False) or size >= limit:
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def listen_for_disconnect(self, receive, task, exchange):
        """Cancels ``task`` (the one serving the request) when the client goes away; what is
        left of a body read no further (over the limit) is dropped as it arrives."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                exchange.client_left = True
                task.cancel()
                return
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
        content = response.content
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": _headers(response, len(content)),
            }
        )
        await send({"type": "http.response.body", "body": content})

    async def _send_stream(self, response, send):
        """Each event goes out in one message as it comes (events are far below chunk_size)."""
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": _headers(response, None),
            }
        )
        async with aclosing(aiter(response)) as content:
            async for part in content:
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body"})


SECURITY_HEADERS = (
    ("x-content-type-options", b"X-Content-Type-Options", b"nosniff"),
    ("referrer-policy", b"Referrer-Policy", b"same-origin"),
    ("x-frame-options", b"X-Frame-Options", b"DENY"),
)


def _headers(response, length: int | None) -> list[tuple[bytes, bytes]]:
    """The response's headers as ASGI wants them, the security headers it does not set and,
    given a length, a Content-Length (as the middleware added them)."""
    # ResponseHeaders keeps lower-case name → (name, value), the values checked and str
    store = response.headers._store
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in store.values()]
    for key, name, value in SECURITY_HEADERS:
        if key not in store:
            headers.append((name, value))
    if length is not None and "content-length" not in store:
        headers.append((b"Content-Length", b"%d" % length))
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
