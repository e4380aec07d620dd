"""Anvil's access log, in place of uvicorn's (which the commands we ship turn off).

uvicorn's access log writes a line for every request, about 0.05-0.1 ms of CPU each, on the
event loop before the response goes out; every successful gateway request is in the usage
ledger already (time, key, model, tokens, outcome, latency). So one line, in uvicorn's
format, is written here for every portal request (pages, admin, management API, static files)
and for every gateway answer that is not 2xx (refused keys, bad requests, limits, backend
failures), after the answer is sent: ``127.0.0.1:50000 - "POST /api/v1/chat/completions
HTTP/1.1" 401``. Only the method, path and query string of a request are logged, never its
body. Logger ``anvil.access`` (INFO); ACCESS_LOG=false silences it. Each line also carries the
answer's ``status`` and the request's ``duration_ms`` (what ``LOG_FORMAT=json`` shows, with the
request's id, key prefix and model: apps/core/logs.py).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from apps.core.logs import begin_request, current_request, end_request, request_id_header

logger = logging.getLogger("anvil.access")

# Characters a query string keeps as they are; anything else (spaces, control characters,
# non-ASCII) is percent-encoded, so a request can not write lines of its own into the log.
QUERY_SAFE = "/?:@!$&'()*+,;=%"


def log_access(scope: dict, status: int) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else ""
    target = quote(scope["path"])
    if query := scope.get("query_string"):
        target = f"{target}?{quote(query, safe=QUERY_SAFE)}"
    request = current_request()
    extra = {"status": status}
    if request is not None:
        extra["duration_ms"] = request.duration_ms()
    logger.info(
        '%s - "%s %s HTTP/%s" %d',
        address,
        scope["method"],
        target,
        scope.get("http_version", "1.1"),
        status,
        extra=extra,
    )


async def logging_access(app, scope, receive, send) -> None:
    """Serve one HTTP request with ``app`` and log its answer's status."""
    status = None

    async def noting_status(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            header = request_id_header()
            if header is not None:
                message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    token = begin_request(scope)
    try:
        await app(scope, receive, noting_status)
    finally:
        if status is not None:
            log_access(scope, status)
        end_request(token)
