"""OpenAI wire format: error bodies, response objects and server-sent-event chunks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

DONE = b"data: [DONE]\n\n"


class ApiError(Exception):
    """An error answered with OpenAI's error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.type, self.code, self.param = status, error_type, code, param

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": str(self),
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class BadRequest(ApiError):
    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, status=400, param=param)


def error_for_status(status: int) -> ApiError:
    """The error a backend fault ``error-<status>`` answers with."""
    if status == 429:
        return ApiError(
            "Rate limit reached (dev backend fault).",
            status=429,
            error_type="requests",
            code="rate_limit_exceeded",
        )
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return ApiError(f"Dev backend fault: HTTP {status}.", status=status, error_type=kind)


def encode(obj: Any) -> bytes:
    return _dumps(obj).encode()


def sse(obj: Any) -> bytes:
    return b"data: " + encode(obj) + b"\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def envelope(*, kind: str, model: str) -> dict[str, Any]:
    """The fields every response object and chunk of one request shares."""
    prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
    }


TOKEN = "\x00token\x00"  # where a chunk template takes its token


def chunk(head: dict[str, Any], choice: dict[str, Any], *, include_usage: bool) -> bytes:
    body = dict(head, choices=[choice])
    if include_usage:
        body["usage"] = None
    return sse(body)


class ChunkTemplate:
    """A chunk pre-rendered around :data:`TOKEN`, so each token costs one small encode."""

    def __init__(self, head: dict[str, Any], choice: dict[str, Any], *, include_usage: bool):
        rendered = chunk(head, choice, include_usage=include_usage)
        self.before, self.after = rendered.split(encode(TOKEN))

    def render(self, token: str) -> bytes:
        return self.before + encode(token) + self.after
