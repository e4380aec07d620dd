"""The request the gateway's views get from the lean handler (handler.py).

Django's ASGIRequest builds its whole META from the scope for every request (every header
renamed, the server and client addresses, the content type parsed); the gateway's views read
four things of a request: its method, two headers, the body and, for /api/health, the query
string. ``GatewayRequest`` has what they use, with the same names and behaviour as Django's
request, read from the scope on first use. Django's full request (``django_request()``) is
built only where Django's own code takes one: an error page or an error's log line.
"""

from __future__ import annotations

import io

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest, get_script_prefix
from django.http import HttpRequest, QueryDict
from django.utils.functional import cached_property

from lib.asgi import Headers


def path_info(scope: dict) -> str:
    """The path without the script prefix, as Django's request has it."""
    script_name = get_script_prefix(scope)
    return scope["path"].removeprefix(script_name) if script_name else scope["path"]


# Host header → (ALLOWED_HOSTS, DEBUG) it was accepted under.
_accepted_hosts: dict[str, tuple[list, bool]] = {}


class GatewayRequest:
    def __init__(self, scope: dict, body: bytes) -> None:
        self.scope = scope
        self.method = scope["method"].upper()
        self.path = scope["path"]
        self.path_info = path_info(scope)
        # Decoded here, as Django does: a query string that is not UTF-8 is a 400 (the handler).
        self.query_string = scope.get("query_string", b"").decode()
        self._body = body
        self._position = 0

    @cached_property
    def headers(self) -> Headers:
        return Headers(self.scope.get("headers", ()))

    @cached_property
    def GET(self) -> QueryDict:
        return QueryDict(self.query_string)

    def read(self, size: int = -1) -> bytes:
        """The body from where the last read stopped, like Django's ``request.read``."""
        start = self._position
        end = len(self._body) if size is None or size < 0 else start + size
        self._position = min(end, len(self._body))
        return self._body[start:end]

    def get_host(self) -> str:
        """Django's own check of the host (``HttpRequest.get_host``: ALLOWED_HOSTS, DEBUG's
        localhost variants, DisallowedHost and its message), fed by ``_get_raw_host`` below. A
        host it accepted is remembered while ALLOWED_HOSTS and DEBUG stay as they were."""
        host = self._get_raw_host()
        if _accepted_hosts.get(host) == (settings.ALLOWED_HOSTS, settings.DEBUG):
            return host
        HttpRequest.get_host(self)  # DisallowedHost, or the host accepted
        if len(_accepted_hosts) >= 1024:  # hosts a wildcard pattern lets through
            _accepted_hosts.clear()
        _accepted_hosts[host] = (settings.ALLOWED_HOSTS, settings.DEBUG)
        return host

    def _get_raw_host(self) -> str:
        headers = self.headers
        if settings.USE_X_FORWARDED_HOST and "X-Forwarded-Host" in headers:
            return headers["X-Forwarded-Host"]
        if "Host" in headers:
            return headers["Host"]
        return self.django_request()._get_raw_host()  # the server's name and port

    _django_request: ASGIRequest | None = None

    def django_request(self) -> ASGIRequest:
        """Django's request for the same scope and body (built once)."""
        if self._django_request is None:
            self._django_request = ASGIRequest(self.scope, io.BytesIO(self._body))
        return self._django_request
