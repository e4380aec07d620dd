"""Forwarding an admitted request to its backend.

``forward`` sends a non-streaming request and reads the whole answer; ``stream`` relays a
streaming one event by event as they arrive (Anvil always asks the backend for usage in the
stream and hides that chunk from clients that did not ask for it). Both put what the backend
reported on the admission's tally; the admission (``admission.admitted``) settles and releases
on whatever exit, so nothing here ends a hold.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import time
from contextlib import aclosing

from django.conf import settings

from apps.gateway import metrics
from apps.gateway.admission import Admission, admitted
from apps.gateway.errors import GatewayError
from apps.gateway.tokenize import rendered_prompt_tokens
from apps.gateway.upstream import backend_post
from apps.usage.models import Outcome
from lib.backend_http import BackendConnectionError, BackendResponse


def backend_failure(exc: Exception | None, status: int | None = None) -> GatewayError:
    if isinstance(exc, TimeoutError):
        return GatewayError(
            504, "The model's backend did not answer in time.", code="backend_timeout"
        )
    detail = f"status {status}" if status else type(exc).__name__
    return GatewayError(502, f"The model's backend failed ({detail}).", code="backend_error")


def backend_busy(status: int, retry_after: str | None) -> GatewayError:
    """The backend said it is too busy (429) or unavailable (503) for now."""
    if not (retry_after and retry_after.isdigit() and len(retry_after) <= 5):  # seconds only
        retry_after = str(settings.GATEWAY_BACKEND_RETRY_AFTER)
    busy = "is receiving too many requests" if status == 429 else "is unavailable for now"
    return GatewayError(
        status,
        f"The model's backend {busy}; nothing was charged. Retry in {retry_after} s.",
        code="backend_rate_limited" if status == 429 else "backend_unavailable",
        headers={"Retry-After": retry_after},
    )


def stream_failure(outcome: str) -> GatewayError:
    if outcome == Outcome.BACKEND_TIMEOUT:
        return GatewayError(504, "The model's backend stopped answering.", code="backend_timeout")
    return GatewayError(502, "The model's backend broke off the answer.", code="backend_error")


def _failed(admission: Admission, exc: Exception) -> GatewayError:
    """The backend failed: the outcome the ledger records, and what the client is told."""
    timeout = isinstance(exc, TimeoutError)
    admission.tally.outcome = Outcome.BACKEND_TIMEOUT if timeout else Outcome.BACKEND_ERROR
    return backend_failure(exc)


async def _open(admission: Admission, path: str, body: dict) -> BackendResponse:
    """The backend's answer, its status 200 (else the GatewayError it amounts to)."""
    model = admission.model
    admission.tally.forwarded = True
    metrics.forwarded()
    try:
        response = await backend_post(
            model.base_url + path, body=json.dumps(body).encode(), secret=model.backend_secret
        )
    except (BackendConnectionError, TimeoutError) as exc:
        raise _failed(admission, exc) from None
    if response.status != 200:
        admission.tally.outcome = Outcome.BACKEND_ERROR
        async with response:
            raise await _error_from_backend(response)
    return response


async def _error_from_backend(response: BackendResponse) -> GatewayError:
    """A backend's refusal: too busy (429, 503: the same status, with its Retry-After or
    GATEWAY_BACKEND_RETRY_AFTER, so clients back off); its other 4xx means the request was bad
    (400, message passed on); anything else is the backend's failure (502)."""
    content = await response.read()
    status = response.status
    if status in (429, 503):
        return backend_busy(status, response.headers.get("retry-after"))
    if 400 <= status < 500 and status not in (401, 403, 429):
        try:
            message = json.loads(content)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"The model's backend refused the request (status {status})."
        return GatewayError(400, str(message), code="backend_rejected")
    return backend_failure(None, status)


async def forward(admission: Admission, path: str, body: dict) -> dict:
    """A non-streaming request: forward it and read the whole answer (its usage goes on the
    tally); a GatewayError when the backend failed."""
    tally = admission.tally
    try:
        async with asyncio.timeout_at(_deadline(admission)):
            async with await _open(admission, path, body) as response:
                payload = json.loads(await response.read())
    except (BackendConnectionError, ValueError, TimeoutError) as exc:
        raise _failed(admission, exc) from None
    if not isinstance(payload, dict):
        raise backend_failure(ValueError("the backend's answer is not a JSON object"))
    tally.take_usage(payload.get("usage"))
    if tally.prompt_tokens is None:
        tally.chunks = completion_estimate(payload)
    payload["model"] = admission.model.name
    return payload


async def stream(admitting: admitted, path: str, upstream_body, client_wants_usage: bool):
    """A streaming request's events: the backend's, then a failure event if it broke off,
    the credit comment and ``[DONE]``. The admission is entered here and held while the
    events flow, so it ends (settles, releases) however the stream ends — the client leaving
    included. The first event is awaited before the answer starts (``views``), so a refusal
    or a backend failing before its first token gets a proper status."""
    native = path == RESPONSES_PATH
    async with admitting as admission:
        body = upstream_body(admission)
        async with await _open(admission, path, body) as response:
            reading = _response_events if native else _events
            async with aclosing(reading(admission, response, client_wants_usage)) as events:
                async for event in events:
                    yield event
        tally = admission.tally
        if tally.prompt_tokens is None and tally.outcome is None and not native:
            # no usage: ask the backend to count the chat prompt it rendered
            tally.rendered_prompt = await rendered_prompt_tokens(admission.model, body)
        charged = admission.end()
        # A stream is over for its client once its row is in the ledger (the answer's time
        # is not what a stream is measured by).
        await asyncio.shield(admission.settlement)
        if admission.tally.outcome not in (None, Outcome.OK):
            error = stream_failure(admission.tally.outcome).body()
            if native:  # the Responses API's error event; its streams end without [DONE]
                event = {**error["error"], "type": "error"}
                yield f"event: error\ndata: {json.dumps(event)}\n\n"
                yield f": anvil {json.dumps(charged)}\n\n"
                return
            yield f"data: {json.dumps(error)}\n\n"
        if native:
            yield f": anvil {json.dumps(charged)}\n\n"
            return
        estimated = admission.estimated_usage()
        if estimated is not None:
            charged = {**charged, "usage_estimated": True}
            if client_wants_usage:  # the backend sent no usage chunk: Anvil's estimate
                yield f"data: {json.dumps(_usage_chunk(admission, path, estimated))}\n\n"
        yield f": anvil {json.dumps(charged)}\n\n"
        yield "data: [DONE]\n\n"


async def _events(admission: Admission, response: BackendResponse, client_wants_usage: bool):
    """The backend's data events, re-framed, as the client gets them; the tally's outcome is
    a backend error or timeout when the backend broke off before ``[DONE]``."""
    tally = admission.tally
    rename = _model_renames(admission)
    ended = False
    try:
        async with asyncio.timeout_at(_deadline(admission)):
            async for line in response.lines():
                if not line.startswith(b"data:"):
                    continue  # blank separators, comments, event names: re-framed below
                data = line[5:].strip()
                if data == b"[DONE]":
                    ended = True
                    break
                if _relay_chunk(tally, data, client_wants_usage):
                    for upstream, name in rename:
                        data = data.replace(upstream, name)
                    yield b"data: " + data + b"\n\n"
            if ended and not response.at_eof():
                await response.read()  # the rest (a blank line) frees the connection
    except (BackendConnectionError, TimeoutError) as exc:
        if not ended:
            timeout = isinstance(exc, TimeoutError)
            tally.outcome = Outcome.BACKEND_TIMEOUT if timeout else Outcome.BACKEND_ERROR
        return
    if ended:
        response.release()  # back to the pool
    else:
        tally.outcome = Outcome.BACKEND_ERROR


# A backend that serves the Responses API itself (``responses: native`` in the catalog).
RESPONSES_PATH = "/responses"
RESPONSE_DELTA = re.compile(
    rb'"type"\s*:\s*"response\.(?:output_text|function_call_arguments)\.delta"'
)
RESPONSE_END = re.compile(rb'"type"\s*:\s*"response\.(?:completed|incomplete|failed)"')


async def _response_events(admission: Admission, response: BackendResponse, _wants_usage: bool):
    """A native Responses stream's events as they came (``event:`` and ``data:`` lines); its
    last event (completed, incomplete or failed) carries the usage and ends it. A stream that
    stops before that event is the backend's failure."""
    tally = admission.tally
    rename = _model_renames(admission)
    ended = False
    try:
        async with asyncio.timeout_at(_deadline(admission)):
            async for line in response.lines():
                if line.startswith(b"event:"):
                    yield line.rstrip() + b"\n"
                    continue
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                if RESPONSE_DELTA.search(data):
                    tally.chunks += 1
                elif RESPONSE_END.search(data):
                    ended = True
                    _take_response_usage(tally, data)
                for upstream, name in rename:
                    data = data.replace(upstream, name)
                yield b"data: " + data + b"\n\n"
    except (BackendConnectionError, TimeoutError) as exc:
        if not ended:
            timeout = isinstance(exc, TimeoutError)
            tally.outcome = Outcome.BACKEND_TIMEOUT if timeout else Outcome.BACKEND_ERROR
        return
    if not ended:
        tally.outcome = Outcome.BACKEND_ERROR
    elif response.at_eof():
        response.release()


def _take_response_usage(tally, data: bytes) -> None:
    try:
        event = json.loads(data)
    except ValueError:
        return
    answer = event.get("response") if isinstance(event, dict) else None
    if isinstance(answer, dict):
        tally.take_usage(answer.get("usage"))


def _usage_chunk(admission: Admission, path: str, usage: dict) -> dict:
    """The final chunk of a stream with ``include_usage``: no choices, the usage."""
    chat = path.endswith("/chat/completions")
    return {
        "id": "anvil-usage",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": admission.model.name,
        "choices": [],
        "usage": usage,
    }


def _deadline(admission: Admission) -> float:
    """No request outlives GATEWAY_REQUEST_MAX_SECONDS, so its hold (which lives a little
    longer) can never expire under it."""
    loop_now = asyncio.get_running_loop().time()
    elapsed = time.monotonic() - admission.started
    return loop_now + settings.GATEWAY_REQUEST_MAX_SECONDS - elapsed


async def chain(first, rest):
    """``first``, then the rest; closing this closes the rest at once (so the admission ends
    inside the caller's close, which a graceful shutdown waits for)."""
    async with aclosing(rest):
        metrics.first_token()  # the stream's first event goes out
        yield first
        async for event in rest:
            yield event


def _model_renames(admission: Admission) -> tuple[tuple[bytes, bytes], ...]:
    """Byte replacements that put the catalog name in a chunk's "model" field (a quote inside
    a JSON string is escaped, so the pattern can only match the field itself)."""
    upstream, name = admission.model.upstream_model, admission.model.name
    if upstream == name:
        return ()
    old, new = json.dumps(upstream).encode(), json.dumps(name).encode()
    return ((b'"model":' + old, b'"model":' + new), (b'"model": ' + old, b'"model": ' + new))


# A chunk is parsed only when it may carry usage; otherwise these patterns decide.
USAGE = re.compile(rb'"usage"\s*:\s*\{')
GENERATED = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")|"tool_calls"\s*:\s*\[\s*\{')


def _relay_chunk(tally, data: bytes, client_wants_usage: bool) -> bool:
    """Note what the chunk tells about usage; say whether the client should see it."""
    if not USAGE.search(data):
        if GENERATED.search(data):
            tally.chunks += 1
        return True
    try:
        chunk = json.loads(data)
    except ValueError:
        return True
    if not isinstance(chunk, dict):
        return True
    if chunk.get("usage"):
        tally.take_usage(chunk["usage"])
    choices = chunk.get("choices")
    if choices:
        if any(_generated(choice) for choice in choices if isinstance(choice, dict)):
            tally.chunks += 1
        return True
    return client_wants_usage or not chunk.get("usage")


def embeddings_as_base64(payload: dict) -> None:
    """Embeddings the backend returned as floats although the client asked for base64 (some
    servers ignore ``encoding_format``), in OpenAI's base64: little-endian float32 bytes."""
    for item in payload.get("data") or []:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list) and all(type(x) in (float, int) for x in vector):
            packed = struct.pack(f"<{len(vector)}f", *vector)
            item["embedding"] = base64.b64encode(packed).decode("ascii")


def completion_estimate(payload: dict) -> int:
    """Completion tokens of an answer that came without usage, by the rule in tokens.py."""
    size = 0
    for choice in payload.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or {}
        size += len(str(choice.get("text") or message.get("content") or "").encode())
        for call in message.get("tool_calls") or []:
            size += len(json.dumps(call.get("function", {})).encode())
    return -(-size // 4)


def _generated(choice: dict) -> bool:
    delta = choice.get("delta") or {}
    return bool(choice.get("text") or delta.get("content") or delta.get("tool_calls"))
