"""Forwarding an admitted request to its backend and settling it.

Non-streaming answers are read whole and returned with the credit headers; on PostgreSQL the
settlement runs while the answer is sent (``settle_after_answer``). Streams are relayed
event by event as they arrive; Anvil always asks the backend for usage in the stream and hides
that chunk from clients that did not ask for it. Whatever happens — normal end, client
disconnect (Django cancels the task or closes the generator), backend error or timeout — the
backend stream is closed, the model's slot is released and the hold is settled exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from apps.gateway.admission import Admission
from apps.gateway.errors import GatewayError
from apps.gateway.ready import ready_holds
from apps.gateway.upstream import backend_post
from apps.usage.credits import credits_for
from apps.usage.hot import ahold_settle, freshest_status
from apps.usage.models import Outcome
from apps.usage.steps import settled_status
from lib.aio import complete, keep
from lib.backend_http import BackendConnectionError, BackendResponse

logger = logging.getLogger(__name__)


@dataclass
class Tally:
    """What a request consumed, as far as Anvil knows it."""

    admission: Admission
    started: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    chunks: int = 0
    outcome: str = Outcome.OK
    settled: bool = False
    charged: dict = field(default_factory=dict)

    def take_usage(self, usage: dict | None) -> None:
        """Take the backend's usage when the ledger can hold it; otherwise the request is
        billed as one without usage (estimated): a negative count, true or false, or one
        beyond the ledger's integer columns would fail the settlement, leaving the hold."""
        if not isinstance(usage, dict) or not _token_count(usage.get("prompt_tokens")):
            return
        try:
            completion = int(usage.get("completion_tokens") or 0)
        except (TypeError, ValueError, OverflowError):
            return
        if _token_count(completion):
            self.prompt_tokens, self.completion_tokens = usage["prompt_tokens"], completion


MAX_TOKEN_COUNT = 2**31 - 1  # the ledger's (and the settlement's) integer columns


def _token_count(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_TOKEN_COUNT


def _settle_args(tally: Tally) -> dict:
    admission, key = tally.admission, tally.admission.key
    estimated = tally.prompt_tokens is None
    generated = tally.chunks if estimated else tally.completion_tokens
    if tally.outcome in (Outcome.BACKEND_ERROR, Outcome.BACKEND_TIMEOUT) and not generated:
        prompt = 0  # a backend failure before the first token costs nothing
    else:
        prompt = admission.prompt_estimate if estimated else tally.prompt_tokens
    return {
        "hold_id": admission.hold_id,
        "api_key_id": key.id,
        "grant_id": key.grant_id,
        "user_id": key.owner_id,
        "prompt_tokens": prompt,
        "completion_tokens": generated or 0,
        "outcome": tally.outcome,
        "latency_ms": int((time.monotonic() - tally.started) * 1000),
        "estimated": estimated,
        "max_charge": admission.max_charge,
    }


async def _settle(tally: Tally) -> dict:
    """Settle the hold; the budgets after come from the settlement's own transaction."""
    settlement = await ahold_settle(**_settle_args(tally))
    status = settlement.status
    tally.charged = {
        "credits_charged": str(settlement.entry.credits) if settlement.entry else "0",
        "remaining": None if status.remaining is None else str(status.remaining),
        "limited_by": status.limited_by,
    }
    return tally.charged


async def settle(tally: Tally) -> dict:
    """Settle once; survives the cancellation of the task that calls it."""
    if tally.settled:
        return tally.charged
    tally.settled = True
    request_ended(tally.admission)
    return await complete(_settle(tally))


def request_ended(admission: Admission) -> None:
    """The key's ready hold for this model now waits GATEWAY_READY_HOLD_SECONDS for the next
    request (apps.gateway.ready), counted from the end of this one."""
    registry = ready_holds()
    if registry is not None:
        registry.arm(admission.key.id, admission.model.id)


def credit_headers(charged: dict, admission: Admission) -> dict[str, str]:
    headers = {"X-Anvil-Credits-Charged": charged["credits_charged"]}
    if charged["remaining"] is not None:
        headers["X-Anvil-Credits-Remaining"] = charged["remaining"]
    if charged["limited_by"]:
        headers["X-Anvil-Limited-By"] = charged["limited_by"]
    if admission.lowered:
        headers["X-Anvil-Max-Tokens-Lowered"] = str(admission.max_tokens)
    return headers


def backend_failure(exc: Exception | None, status: int | None = None) -> GatewayError:
    if isinstance(exc, TimeoutError):
        return GatewayError(
            504, "The model's backend did not answer in time.", code="backend_timeout"
        )
    detail = f"status {status}" if status else type(exc).__name__
    return GatewayError(502, f"The model's backend failed ({detail}).", code="backend_error")


def stream_failure(outcome: str) -> GatewayError:
    if outcome == Outcome.BACKEND_TIMEOUT:
        return GatewayError(504, "The model's backend stopped answering.", code="backend_timeout")
    return GatewayError(502, "The model's backend broke off the answer.", code="backend_error")


def outcome_of(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):  # the backend client's timeouts are TimeoutErrors
        return Outcome.BACKEND_TIMEOUT
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return Outcome.CLIENT_DISCONNECTED
    return Outcome.BACKEND_ERROR


async def _open(admission: Admission, path: str, body: dict) -> BackendResponse:
    model = admission.model
    return await backend_post(
        model.base_url + path, body=json.dumps(body).encode(), secret=model.backend_secret
    )


async def _error_from_backend(response: BackendResponse) -> GatewayError:
    """A backend's refusal: its 4xx means the request was bad (400, message passed on);
    anything else is the backend's failure (502)."""
    content = await response.read()
    status = response.status
    if 400 <= status < 500 and status not in (401, 403, 429):
        try:
            message = json.loads(content)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"The model's backend refused the request (status {status})."
        return GatewayError(400, str(message), code="backend_rejected")
    return backend_failure(None, status)


async def relay_once(*, admission: Admission, path: str, body: dict, slot) -> HttpResponse:
    """A non-streaming request: forward, read the whole answer, settle, answer."""
    tally = Tally(admission=admission, started=admission.started or time.monotonic())
    try:
        async with slot, asyncio.timeout_at(_deadline(tally)):
            async with await _open(admission, path, body) as response:
                if response.status != 200:
                    tally.outcome = Outcome.BACKEND_ERROR
                    raise await _error_from_backend(response)
                payload = json.loads(await response.read())
            releasing = slot.release_soon()  # its round trip overlaps sending the answer
            if not isinstance(payload, dict):
                raise ValueError("the backend's answer is not a JSON object")
            tally.take_usage(payload.get("usage"))
            if tally.prompt_tokens is None:
                tally.chunks = completion_estimate(payload)
    except GatewayError:
        await settle(tally)
        raise
    except (BackendConnectionError, ValueError, TimeoutError) as exc:
        tally.outcome = outcome_of(exc)
        await settle(tally)
        raise backend_failure(exc) from None
    except BaseException as exc:
        tally.outcome = outcome_of(exc)
        await settle(tally)
        raise
    payload["model"] = admission.model.name
    settling = settle_after_answer(tally)
    if settling is None:  # no budgets from the hold (SQLite): settle first
        charged = await settle(tally)
    else:
        charged = tally.charged
    answer = HttpResponse(json.dumps(payload), content_type="application/json")
    for name, value in credit_headers(charged, admission).items():
        answer[name] = value
    # The slot's release and the settlement run while the answer is sent (neither can be
    # cancelled by the caller); the handler waits for both after sending it.
    answer.settling = asyncio.gather(*(task for task in (settling, releasing) if task))
    return answer


def settle_after_answer(tally: Tally) -> asyncio.Future | None:
    """Settle a successful non-streaming request while its answer is sent, not before: the credit
    headers come from the budgets the hold read when it was placed (or a later reading of
    the key's: ``hot.freshest_status``) — the charge is what the settlement will charge
    (``credits_for`` of the usage, at most the hold and the admission's ``max_charge``), the
    budgets are moved as the settlement moves them. Returns the settlement's task (kept
    referenced; the handler awaits it after the answer went out, so a graceful shutdown
    waits for it too), or None when the hold carries no budgets (on SQLite), and then the
    caller settles first as before.

    What the answer tells is what the ledger will say; only a client that reads its usage in
    the very millisecond after the answer can find the request not yet in it."""
    hold = tally.admission.hold
    if getattr(hold, "status", None) is None or tally.settled:
        return None
    status = freshest_status(hold)
    args = _settle_args(tally)
    cost = credits_for(
        prompt_tokens=args["prompt_tokens"],
        completion_tokens=args["completion_tokens"],
        prompt_price=hold.prompt_price,
        completion_price=hold.completion_price,
    )
    most = tally.admission.max_charge  # (a ready hold larger than the request's own)
    charge = min(cost, hold.amount if most is None else min(hold.amount, most))
    after = settled_status(status, amount=hold.amount, charge=charge)
    tally.settled = True
    request_ended(tally.admission)
    tally.charged = {
        "credits_charged": str(charge),
        "remaining": None if after.remaining is None else str(after.remaining),
        "limited_by": after.limited_by,
    }
    return keep(asyncio.ensure_future(_settle_logged(args)))


async def _settle_logged(args: dict) -> None:
    """A settlement nobody waits on for its result: a failure is logged (the hold is then
    released by the sweeper, at no charge)."""
    try:
        await ahold_settle(**args)
    except Exception:
        logger.exception("settling hold %s after its answer failed", args["hold_id"])


async def relay_stream(
    *, admission: Admission, path: str, body: dict, slot, client_wants_usage: bool
) -> HttpResponse:
    """A streaming request: the backend's answer must start well before relaying begins, so
    errors before the first token still get a proper status."""
    tally = Tally(admission=admission, started=admission.started or time.monotonic())
    stack = AsyncExitStack()
    try:
        await stack.enter_async_context(slot)
        response = await _open(admission, path, body)
        stack.callback(response.close)  # drops the connection: the backend stops
        if response.status != 200:
            tally.outcome = Outcome.BACKEND_ERROR
            raise await _error_from_backend(response)
    except BaseException as exc:
        if not isinstance(exc, GatewayError):
            tally.outcome = outcome_of(exc)
        await _end_stream(tally, stack)
        if isinstance(exc, BackendConnectionError | TimeoutError):
            raise backend_failure(exc) from None
        raise
    events = _events(tally, response, stack, client_wants_usage)
    # Start the relay before handing it to Django: a started generator that is dropped
    # unfinished (the client left before Django began sending) is closed by the event loop's
    # finaliser, which closes the backend stream, frees the slot and settles.
    first = await anext(events)
    answer = StreamingHttpResponse(_chain(first, events), content_type="text/event-stream")
    answer["Cache-Control"] = "no-cache"
    answer["X-Accel-Buffering"] = "no"
    if admission.lowered:
        answer["X-Anvil-Max-Tokens-Lowered"] = str(admission.max_tokens)
    return answer


async def _events(
    tally: Tally,
    response: BackendResponse,
    stack: AsyncExitStack,
    client_wants_usage: bool,
):
    """The backend's events as the client gets them, then the failure (if any), the credit
    comment and ``[DONE]``. Whatever ends it (its last event, the client leaving, a
    cancellation landing in any await), the hold is settled before the slot is released, in
    the ``finally``: every request that got a hold leaves exactly one ledger row."""
    try:
        ended = False
        rename = _model_renames(tally.admission)
        try:
            async with asyncio.timeout_at(_deadline(tally)):
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
            if ended:
                response.release()  # back to the pool
            else:
                tally.outcome = Outcome.BACKEND_ERROR
        except (BackendConnectionError, TimeoutError) as exc:
            if not ended:
                tally.outcome = outcome_of(exc)
        charged = await settle(tally)
        if tally.outcome != Outcome.OK:
            yield f"data: {json.dumps(stream_failure(tally.outcome).body())}\n\n"
        yield f": anvil {json.dumps(charged)}\n\n"
        yield "data: [DONE]\n\n"
    except BaseException as exc:
        if not tally.settled:
            tally.outcome = outcome_of(exc)
            response.close()  # generation stops at the backend before the settlement
        raise
    finally:
        await _end_stream(tally, stack)


async def _end_stream(tally: Tally, stack: AsyncExitStack) -> None:
    """Settle the hold, then close the backend stream and release the slot: each runs to its
    end even when the caller is cancelled meanwhile (a settlement is never skipped because a
    release was interrupted); ``settle`` does nothing the second time."""
    try:
        await settle(tally)
    finally:
        await complete(stack.aclose())


def _model_renames(admission: Admission) -> tuple[tuple[bytes, bytes], ...]:
    """Byte replacements that put the catalog name in a chunk's "model" field (a quote inside
    a JSON string is escaped, so the pattern can only match the field itself)."""
    upstream, name = admission.model.upstream_model, admission.model.name
    if upstream == name:
        return ()
    old, new = json.dumps(upstream).encode(), json.dumps(name).encode()
    return ((b'"model":' + old, b'"model":' + new), (b'"model": ' + old, b'"model": ' + new))


async def _chain(first: str, rest):
    """``first``, then the rest; closing this closes the rest at once (its settlement then
    runs inside the caller's close, which a graceful shutdown waits for, instead of in the
    event loop's finaliser for unfinished generators)."""
    async with aclosing(rest):
        yield first
        async for event in rest:
            yield event


def _deadline(tally: Tally) -> float:
    """No request outlives GATEWAY_REQUEST_MAX_SECONDS, so its hold (which lives a little
    longer) can never expire under it."""
    loop_now = asyncio.get_running_loop().time()
    return loop_now + settings.GATEWAY_REQUEST_MAX_SECONDS - (time.monotonic() - tally.started)


# A chunk is parsed only when it may carry usage; otherwise these patterns decide.
USAGE = re.compile(rb'"usage"\s*:\s*\{')
GENERATED = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")|"tool_calls"\s*:\s*\[\s*\{')


def _relay_chunk(tally: Tally, data: bytes, client_wants_usage: bool) -> bool:
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
