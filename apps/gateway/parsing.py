"""Reading a client's request body: size, JSON, and the few fields Anvil itself needs.
Everything else passes to the backend untouched."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig

from apps.gateway.errors import GatewayError


def read_json_body(request) -> dict:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise too_large(limit)
    try:
        raw = request.body
    except RequestDataTooBig:
        raise too_large(limit) from None
    if len(raw) > limit:
        raise too_large(limit)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(
            400, f"The request body is not valid JSON: {exc}.", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


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
        return value
    return None


def require_stream_flag(body: dict) -> bool:
    value = body.get("stream", False)
    if value in (None, False, "false"):  # the older quick-start sends the string 'false'
        return False
    if value in (True, "true"):
        return True
    raise GatewayError(400, "'stream' must be true or false.", code="invalid_value", param="stream")


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


def require_prompt(body: dict) -> None:
    prompt = body.get("prompt")
    ok = isinstance(prompt, str) or (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(p, str | int) or isinstance(p, list) for p in prompt)
    )
    if not ok:
        raise GatewayError(
            400,
            "'prompt' must be a string or a list of strings.",
            code="invalid_value",
            param="prompt",
        )


def require_input(body: dict) -> None:
    value = body.get("input")
    ok = isinstance(value, str) or (
        isinstance(value, list) and value and all(isinstance(v, str | int | list) for v in value)
    )
    if not ok:
        raise GatewayError(
            400,
            "'input' must be a string or a non-empty list of strings.",
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
