"""Reading a client's request body: size, JSON, and the few fields Anvil itself needs.
Everything else passes to the backend untouched."""

from __future__ import annotations

import json
import re

from django.conf import settings

from apps.gateway.errors import GatewayError

# Deeper JSON is refused: real requests (tool schemas included) stay far below, and the body is
# walked again later (token counting, json.dumps for the backend) on a deeper call stack, where
# Python's recursion limit would turn a thousand brackets into a 500.
MAX_NESTING = 100

# A \uD800-\uDFFF escape without its partner leaves Python's json a lone surrogate, which no
# UTF-8 encoder (ours in tokens.py, the backend's) accepts. Paired escapes are common (clients
# that escape all non-ASCII send emoji so), so a body with any is checked by encoding it: a
# regex scan for the escape (about 0.3 ms per MB), then about 6 ms per MB of such a body.
SURROGATE_ESCAPE = re.compile(r"\\u[dD]")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


# NaN and Infinity are not JSON (RFC 8259); Python's json would pass them on to the backend.
DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def raw_body(request) -> bytes:
    """The request's body, up to GATEWAY_MAX_BODY_BYTES (413 beyond). Read from the stream,
    not ``request.body``, which refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB, a
    limit for the portal's forms) and would answer 413 with this limit's message below it."""
    raw = getattr(request, "gateway_body", None)
    if raw is not None:
        return raw
    limit = settings.GATEWAY_MAX_BODY_BYTES
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise too_large(limit)
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise too_large(limit)
    request.gateway_body = raw
    return raw


def read_json_body(request) -> dict:
    raw = raw_body(request)
    try:
        # UTF-8 only (RFC 8259), strict: Python's json.loads(bytes) would also take UTF-16/32
        # and let UTF-8-encoded surrogates through.
        text = raw.decode("utf-8-sig")
        body = DECODER.decode(text)
    except RecursionError:
        raise too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(
            400, f"The request body is not valid JSON: {exc}.", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING and nesting(body) > MAX_NESTING:
        raise too_deep()
    if SURROGATE_ESCAPE.search(text) and not _encodable(body):
        raise GatewayError(
            400,
            "The request body is not valid JSON: it has a \\u escape of half a surrogate pair "
            "(not a Unicode character).",
            code="invalid_json",
        )
    return body


def nesting(value) -> int:
    """How deep lists and objects nest in a parsed JSON value (a scalar is 0); no recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_NESTING:
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return deepest


def _encodable(body: dict) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def too_deep() -> GatewayError:
    return GatewayError(
        400,
        f"The request body nests lists and objects deeper than {MAX_NESTING} levels.",
        code="invalid_json",
    )


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"The request body is larger than {limit} bytes.", code="request_too_large"
    )


def require_model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(
            400, "'model' is required and must be a string.", code="invalid_value", param="model"
        )
    return model


def optional_max_tokens(body: dict) -> int | None:
    """The completion tokens asked for per choice: ``max_completion_tokens`` or ``max_tokens``,
    the smaller when both are sent (both are then forwarded as what Anvil admitted)."""
    asked = None
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GatewayError(
                400,
                f"'{field}' must be a whole number of at least 1.",
                code="invalid_value",
                param=field,
            )
        asked = value if asked is None else min(asked, value)
    return asked


MAX_CHOICES = 128


def choices(body: dict) -> int:
    """How many completions the backend generates: ``n`` (and the legacy ``best_of``, which
    generates that many and returns ``n``); the hold covers max_tokens for each of them."""
    count = 1
    for field in ("n", "best_of"):
        value = body.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHOICES:
            raise GatewayError(
                400,
                f"'{field}' must be a whole number from 1 to {MAX_CHOICES}.",
                code="invalid_value",
                param=field,
            )
        count = max(count, value)
    return count


def require_stream_flag(body: dict) -> bool:
    value = body.get("stream", False)
    # ``is``, not ``in``: 0, 1 and 1.0 are no booleans (1 == True in Python).
    if value is None or value is False or value == "false":  # the older quick-start: 'false'
        return False
    if value is True or value == "true":
        return True
    raise GatewayError(400, "'stream' must be true or false.", code="invalid_value", param="stream")


def stream_wants_usage(body: dict) -> bool:
    """``stream_options.include_usage``; ``stream_options`` must be an object (or null)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise GatewayError(
            400,
            "'stream_options' must be an object.",
            code="invalid_value",
            param="stream_options",
        )
    return bool(options.get("include_usage"))


def require_messages(body: dict) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(
            400, "'messages' must be a non-empty list.", code="invalid_value", param="messages"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise GatewayError(
                400,
                f"messages[{index}] must be an object with a 'role'.",
                code="invalid_value",
                param=f"messages[{index}]",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise GatewayError(
                400,
                f"messages[{index}].content must be a string or a list.",
                code="invalid_value",
                param=f"messages[{index}].content",
            )


def token_ids(value) -> bool:
    """A non-empty list of token ids (whole numbers; true and false are not)."""
    return isinstance(value, list) and bool(value) and all(type(v) is int for v in value)


def _texts(value) -> bool:
    """OpenAI's shapes of a prompt or an embedding input: a string, a non-empty list of
    strings, token ids, or a non-empty list of lists of token ids. Mixed lists are refused:
    the token counting in tokens.py tells them apart by their first item."""
    if isinstance(value, str) or token_ids(value):
        return True
    if not isinstance(value, list) or not value:
        return False
    return all(isinstance(v, str) for v in value) or all(token_ids(v) for v in value)


def require_prompt(body: dict) -> None:
    if not _texts(body.get("prompt")):
        raise GatewayError(
            400,
            "'prompt' must be a string, a list of strings, a list of token ids or a list of "
            "lists of token ids.",
            code="invalid_value",
            param="prompt",
        )


def require_input(body: dict) -> None:
    if not _texts(body.get("input")):
        raise GatewayError(
            400,
            "'input' must be a string, a non-empty list of strings, a list of token ids or a "
            "list of lists of token ids.",
            code="invalid_value",
            param="input",
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise GatewayError(
            400,
            "'encoding_format' must be 'float' or 'base64'.",
            code="invalid_value",
            param="encoding_format",
        )
