"""A lean ASGI handler for the gateway's URLs (portal/asgi.py routes them here).

The same URLconf and the same plain async views, without what costs time per request and
that these views do not need:

- no middleware but CORS (django-cors-headers' own class, only for a request with an
  ``Origin``: browsers'): every ``MiddlewareMixin`` middleware runs its hooks through
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

The ASGI side (reading the body, the disconnect, the answer's messages) is ``lib.asgi``; what
is here is the Django glue: the URLconf's views, Django's answers to exceptions and its logs.
"""

from __future__ import annotations

import functools
import logging

from asgiref.sync import sync_to_async
from corsheaders.middleware import CorsMiddleware
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import response_for_exception
from django.http import HttpResponseBadRequest
from django.urls import Resolver404, get_resolver, set_script_prefix
from django.utils.log import log_response

from apps.core.access_log import log_access
from apps.core.logs import request_id_header
from apps.gateway import metrics
from apps.gateway.request import GatewayRequest, path_info
from lib.asgi import (
    CancelOnDisconnect,
    ClientDisconnected,
    read_body,
    response_headers,
    send_stream,
    send_whole,
)

logger = logging.getLogger(__name__)
request_logger = logging.getLogger("django.request")

GATEWAY_PATHS = frozenset(
    {
        "/api/v1/chat/completions",
        "/api/v1/completions",
        "/api/v1/embeddings",
        "/api/v1/responses",
        "/api/v1/models",
        "/api/v1/models-plgrid-format",
        "/api/health",
    }
)


# GET /api/v1/models/<model>: the model's name may hold slashes ("org/model").
MODEL_PREFIX = "/api/v1/models/"

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


def _view_for(path: str):
    """The gateway's view for ``path`` (a trailing slash accepted) and its keyword arguments,
    or None."""
    views = _views()
    if path.endswith("/") and path[:-1] in views:
        path = path[:-1]
    view = views.get(path)
    if view is not None:
        return view, {}
    if path.startswith(MODEL_PREFIX) and path.strip("/") != MODEL_PREFIX.strip("/"):
        try:
            match = get_resolver().resolve(path.rstrip("/"))
        except Resolver404:  # a name no model has ("\n"): Django's handler answers 404
            return None
        return match.func, match.kwargs
    return None


def is_gateway_path(scope: dict) -> bool:
    """A gateway URL the URLconf has (any other goes to Django's handler)."""
    return scope["type"] == "http" and _view_for(path_info(scope)) is not None


class GatewayHandler(ASGIHandler):
    """Django's ASGIHandler's parts for the gateway's views, without middleware, signals or
    Django's request."""

    def load_middleware(self, is_async: bool = False) -> None:
        # None of the portal's (see the module's docstring), but CORS: django-cors-headers'
        # own middleware around the views, for requests that carry an Origin (browsers').
        self._cors = CorsMiddleware(self._view_response)

    async def __call__(self, scope, receive, send):
        try:
            # A body over the limit is read no further (the view answers 413): Django's handler
            # would store one of any size, in a file that rolls over to disk.
            body = await read_body(receive, limit=settings.GATEWAY_MAX_BODY_BYTES)
        except ClientDisconnected:
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
        response = None
        async with CancelOnDisconnect(receive):
            response = await self.get_response_async(request)
            await self.send_response(response, send)
        if response is not None:
            _close(response)
            if not 200 <= response.status_code < 300:
                log_access(scope, response.status_code)  # a 2xx answer is in the ledger

    async def get_response_async(self, request: GatewayRequest):
        """The view's answer; an exception becomes Django's answer to it (as Django's
        convert_exception_to_response), an error is logged as Django logs it."""
        try:
            request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware did (DisallowedHost → 400)
            if "Origin" in request.headers:  # a browser: CORS, a preflight answered here
                response = await self._cors(request)
            else:
                response = await self._view_response(request)
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

    async def _view_response(self, request: GatewayRequest):
        found = _view_for(request.path_info)
        if found is None:
            raise Resolver404({"path": request.path_info})
        view, kwargs = found
        response = await view(request, **kwargs)
        self.check_response(response, view)
        return response

    async def send_response(self, response, send):
        metrics.responded(response.status_code)
        if response.streaming and not response.is_async:
            await super().send_response(response, send)
        elif response.streaming:
            await send_stream(send, response.status_code, _headers(response), aiter(response))
        else:
            content = response.content
            await send_whole(send, response.status_code, _headers(response, len(content)), content)


SECURITY_HEADERS = (
    ("x-content-type-options", b"X-Content-Type-Options", b"nosniff"),
    ("referrer-policy", b"Referrer-Policy", b"same-origin"),
    ("x-frame-options", b"X-Frame-Options", b"DENY"),
)


def _headers(response, length: int | None = None) -> list[tuple[bytes, bytes]]:
    """The response's headers and cookies, the security headers it does not set and, given a
    length, a Content-Length (as the middleware added them)."""
    # ResponseHeaders keeps lower-case name → (name, value), the values checked and str
    headers = response_headers(response.headers._store, defaults=SECURITY_HEADERS, length=length)
    request_id = request_id_header()  # apps.core.logs: the client's, or one made up
    if request_id is not None:
        headers.append(request_id)
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
