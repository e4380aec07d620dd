"""Structured logs: ``LOG_FORMAT=json`` writes one JSON object per line.

Every line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``message``; a line written while a request is served (the access log's, and any other the
request's code writes) also has, where known:

- ``request_id``: the ``X-Request-ID`` header the client or a proxy sent (when it is 1-128
  letters, digits, ``.``, ``_`` or ``-``), else one made up for the request (32 hex digits:
  this process's random prefix and a count); every line of one request has the same one, and
  the answer carries it in its own ``X-Request-ID`` header (the gateway's and the portal's),
  so a user can quote it;
- ``key_prefix``: the public start of the bearer key (``anv-`` or ``anvm-`` and its 12-digit
  lookup, what the portal shows beside a key), only when the header holds a well-formed key,
  never the rest of it;
- ``model``: the model the request named (the gateway notes it once the body is parsed);
- ``status`` and ``duration_ms``: on the access log's line, the answer's status and the time
  from the request's arrival to that line;
- ``exception``: the traceback, when the line has one.

Nothing of a request's body (prompts, completions) nor any other header is put in a line.
The request's fields live in a context variable (``begin_request`` … ``end_request``, around
each HTTP request in portal/asgi.py and apps/core/access_log.py), read only when a line is
written; a filter on the handler (``RequestFields``) copies them onto the record.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
import uuid
from contextvars import ContextVar, Token
from datetime import UTC, datetime

# The shape of a key secret (apps/keys/tokens.py: visible prefix, 12 hex digits of lookup, 40
# letters and digits of body); only the first two parts are ever logged. apps.core sits below
# apps.keys, so the shape is repeated here; apps/core/tests/test_logs.py checks the two agree.
_BEARER_KEY = re.compile(r"Bearer\s+(anvm?-[0-9a-f]{12})[A-Za-z0-9]{40}\s*", re.IGNORECASE)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _new_ids() -> None:
    """Made-up request ids: a random prefix drawn once per process (again in a forked child)
    and a count, unique without a random draw per request."""
    global _id_prefix, _id_count
    _id_prefix, _id_count = uuid.uuid4().hex[:20], itertools.count()


_new_ids()
os.register_at_fork(after_in_child=_new_ids)


class RequestLog:
    """What the log knows of the request being served; read lazily, so a request that writes
    no line pays for nothing but this object."""

    __slots__ = ("_request_id", "model", "scope", "started")

    def __init__(self, scope: dict) -> None:
        self.scope = scope
        self.started = time.perf_counter()
        self.model: str | None = None
        self._request_id: str | None = None

    def _header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", ()):
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            given = self._header(b"x-request-id")
            if given is not None and _REQUEST_ID.fullmatch(given):
                self._request_id = given
            else:
                self._request_id = f"{_id_prefix}{next(_id_count) % 16**12:012x}"
        return self._request_id

    @property
    def key_prefix(self) -> str | None:
        authorization = self._header(b"authorization")
        match = _BEARER_KEY.fullmatch(authorization) if authorization else None
        return match.group(1) if match else None

    def duration_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)


_current: ContextVar[RequestLog | None] = ContextVar("anvil_request_log", default=None)


def begin_request(scope: dict) -> Token:
    return _current.set(RequestLog(scope))


def end_request(token: Token) -> None:
    _current.reset(token)


def current_request() -> RequestLog | None:
    return _current.get()


def request_id_header() -> tuple[bytes, bytes] | None:
    """The answer's ``X-Request-ID`` header for the request being served."""
    request = _current.get()
    if request is None:
        return None
    return b"X-Request-ID", request.request_id.encode("ascii")


def note_model(name: str) -> None:
    """The model the request being served asked for, for its log lines."""
    request = _current.get()
    if request is not None:
        request.model = name


class RequestFields(logging.Filter):
    """Copies the request's fields onto each record written while it is served (a field the
    record already has, given with ``extra``, is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = _current.get()
        if request is not None:
            if getattr(record, "request_id", None) is None:
                record.request_id = request.request_id
            if getattr(record, "key_prefix", None) is None:
                record.key_prefix = request.key_prefix
            if getattr(record, "model", None) is None:
                record.model = request.model
        return True


# The fields a line may carry beyond time, level, logger and message: only these, so nothing
# else a record holds (Django's ``request`` object, say) ever reaches the log.
REQUEST_FIELDS = ("request_id", "key_prefix", "model", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in REQUEST_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if "status" not in line and isinstance(getattr(record, "status_code", None), int):
            line["status"] = record.status_code  # Django's request log gives it so
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["exception"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)
