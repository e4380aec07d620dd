"""Admission: everything decided before a request is forwarded, and the one owner of what the
request holds — its key, its credit hold and its model's slot — until it ends.

    async with admitted(ask, catalog) as admission:
        ...  # forward to the backend; what it reports goes on admission.tally

Entering checks, in the order clients are told: key (401), model known (404), model active
(503) and healthy (503), grant allowed (403), non-commercial vs commercial affiliation (403),
model kind fits the endpoint (400), context window (400); then places the credit hold (429)
while taking the model's slot (503 when its queue is full), the two round trips overlapped.

Leaving, exactly once on every exit — answer, refusal, backend error, timeout, client
disconnect, cancellation — ``Admission.end`` settles the hold for what the tally recorded (a
request that never reached its backend costs nothing and leaves a ledger row saying why) and
releases the slot. It awaits nothing, so no cancellation can cut it short: the settlement is
written by the ledger's batches (``apps.usage.ledger.asettle``) and the slot's release runs in
the background while the answer goes out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings

from apps.core.exceptions import ApplicationError
from apps.core.logs import current_request
from apps.gateway.catalog import ENDPOINT_KINDS, KIND_NAMES, CatalogSnapshot, ServedModel
from apps.gateway.errors import GatewayError
from apps.gateway.metrics import ended as record_metrics
from apps.gateway.slots import QueueFull, model_slot
from apps.gateway.tokens import PromptSize, for_model
from apps.keys.auth import AuthResult, aapi_key_authenticate, aapi_key_standing
from apps.keys.models import ApiKey
from apps.usage import ledger
from apps.usage.exceptions import QuotaExceeded
from apps.usage.models import Hold, Outcome

logger = logging.getLogger(__name__)

# A hold outlives the longest request by this much; only a crashed process leaves it behind.
HOLD_MARGIN_SECONDS = 120


@dataclass(frozen=True)
class Ask:
    """What a request asks for, read from its body (``views.parse``)."""

    secret: str | None
    endpoint: str  # "chat", "completions", "embeddings" or "responses"
    model_name: str
    prompt: PromptSize
    max_tokens: int | None
    choices: int = 1  # completions the backend generates: n (best_of) for each prompt
    # A request made later on the key's behalf (a job): the key by id, judged when admitted.
    key_id: int | None = None


MAX_TOKEN_COUNT = 2**31 - 1  # the ledger's integer columns


def _token_count(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_TOKEN_COUNT


@dataclass
class Tally:
    """What the request consumed, as far as Anvil knows it: the backend's usage when it
    reported one, else the chunks (or bytes) it generated."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    chunks: int = 0
    outcome: str | None = None  # None: decided by how the request ends
    forwarded: bool = False  # the request was sent to its backend
    # Without usage: the backend's count of the rendered prompt, when it could say (tokenize.py)
    rendered_prompt: int | None = None

    def take_usage(self, usage: dict | None) -> None:
        """The backend's usage when the ledger can hold it; otherwise the request is billed
        as one without usage (estimated): a negative count, true or false, or one beyond the
        ledger's integer columns would fail the settlement."""
        if isinstance(usage, dict) and "input_tokens" in usage:  # the Responses API's names
            usage = {
                "prompt_tokens": usage["input_tokens"],
                "completion_tokens": usage.get("output_tokens"),
            }
        if not isinstance(usage, dict) or not _token_count(usage.get("prompt_tokens")):
            return
        try:
            completion = int(usage.get("completion_tokens") or 0)
        except (TypeError, ValueError, OverflowError):
            return
        if _token_count(completion):
            self.prompt_tokens, self.completion_tokens = usage["prompt_tokens"], completion


def outcome_of(exc: BaseException | None) -> str:
    """How a request ended, from what ended it (the relay records a backend's failure on the
    tally itself): answered, the client gone, or cancelled by anything else."""
    if exc is None:
        return Outcome.OK
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return Outcome.CLIENT_DISCONNECTED
    return Outcome.CANCELLED


@dataclass
class Admission:
    key: ApiKey
    model: ServedModel
    hold: Hold
    slot: object  # slots.model_slot, taken
    prompt_estimate: int
    # The completion limit forwarded to the backend: what the hold covers per choice, whether
    # the client sent a limit or not (None for embeddings).
    max_tokens: int | None
    lowered: bool  # max_tokens was lowered to what the budget affords
    started: float  # time.monotonic() before the hold: the request's deadline counts from here
    request_id: str = ""  # the answer's X-Request-ID, written on the ledger row
    tally: Tally = field(default_factory=Tally)
    charged: dict | None = None  # once ended: credits_charged, remaining, limited_by
    billed: ledger.Usage | None = None  # once ended: the usage it was settled for
    settlement: asyncio.Future | None = None  # once ended: the ledger row being written

    def usage(self, exc: BaseException | None) -> ledger.Usage:
        """The ledger's usage for this request: the backend's counts, or estimates (the
        prompt as the backend rendered it when it could count it, else as Anvil counted it; the
        chunks generated). A request that never reached its backend, or whose backend failed
        before the first token, costs nothing."""
        tally = self.tally
        outcome = tally.outcome or outcome_of(exc)
        latency = int((time.monotonic() - self.started) * 1000)
        estimated = tally.prompt_tokens is None
        generated = (tally.chunks if estimated else tally.completion_tokens) or 0
        failed = outcome in (Outcome.BACKEND_ERROR, Outcome.BACKEND_TIMEOUT)
        if not tally.forwarded or (failed and not generated):
            return ledger.Usage.unused(outcome, latency, self.request_id)
        if estimated:
            prompt = tally.rendered_prompt or self.prompt_estimate
        else:
            prompt = tally.prompt_tokens
        return ledger.Usage(prompt, generated, outcome, latency, estimated, self.request_id)

    def end(self, exc: BaseException | None = None) -> dict:
        """Settle the hold and release the slot, once; what the request was charged and what
        its budgets have left after it (the budgets its hold read, moved by this request)."""
        if self.charged is not None:
            return self.charged
        usage = self.billed = self.usage(exc)
        self.slot.release()
        self.settlement = ledger.asettle(self.hold, usage)
        after = ledger.budgets_after(self.hold, usage)
        self.charged = {
            "credits_charged": str(ledger.charge(self.hold, usage)),
            "remaining": None if after is None else str(after.remaining),
            "limited_by": None if after is None else after.limited_by,
        }
        record_metrics(self, exc)  # tokens, credits, outcome (apps/gateway/metrics.py)
        return self.charged

    def headers(self) -> dict[str, str]:
        """The credit headers of the answer (after ``end``)."""
        charged = self.end()
        headers = {"X-Anvil-Credits-Charged": charged["credits_charged"]}
        if charged["remaining"] is not None:
            headers["X-Anvil-Credits-Remaining"] = charged["remaining"]
        if charged["limited_by"]:
            headers["X-Anvil-Limited-By"] = charged["limited_by"]
        if self.lowered:
            headers["X-Anvil-Max-Tokens-Lowered"] = str(self.max_tokens)
        if self.billed.estimated:
            headers["X-Anvil-Usage-Estimated"] = "true"
        return headers

    def estimated_usage(self) -> dict | None:
        """The usage a client is told when the backend reported none and Anvil charged its own
        estimate (after ``end``); None when the backend's counts were used."""
        self.end()
        if self.tally.prompt_tokens is not None:
            return None
        prompt, completion = self.billed.prompt_tokens, self.billed.completion_tokens
        if self.model.kind == "embedding":
            return {"prompt_tokens": prompt, "total_tokens": prompt}
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


class admitted:
    """The request's admission for the length of the ``async with`` (see the module)."""

    def __init__(self, ask: Ask, catalog: CatalogSnapshot) -> None:
        self.ask, self.catalog = ask, catalog
        self.admission: Admission | None = None

    async def __aenter__(self) -> Admission:
        started = time.monotonic()
        ask = self.ask
        request = current_request()
        request_id = request.request_id if request is not None else ""
        key = await (aauthenticate(ask.secret) if ask.key_id is None else akey(ask.key_id))
        model = check_model(
            key=key, catalog=self.catalog, name=ask.model_name, endpoint=ask.endpoint
        )
        prompt = for_model(ask.prompt, model)  # its images and chat template, by its rules
        budget = completion_budget(
            model=model, prompt=prompt, max_tokens=ask.max_tokens, endpoint=ask.endpoint
        )
        slot = model_slot(
            model=model.name, max_concurrency=model.max_concurrency,
            queue_size=model.queue_size, grant_id=key.grant_id,
        )  # fmt: skip
        hold = await _hold_and_slot(self._plan(key, model, prompt, budget), slot, request_id)
        per_choice = min(hold.max_completion_tokens // ask.choices, budget)
        self.admission = Admission(
            key=key, model=model, hold=hold, slot=slot, prompt_estimate=prompt.estimate,
            max_tokens=None if ask.endpoint == "embeddings" else per_choice,
            lowered=per_choice < budget, started=started, request_id=request_id,
        )  # fmt: skip
        return self.admission

    async def __aexit__(self, exc_type, exc, traceback) -> None:
        self.admission.end(exc)

    def _plan(
        self, key: ApiKey, model: ServedModel, prompt: PromptSize, budget: int
    ) -> ledger.Plan:
        """The hold: the prompt once, ``budget`` completion tokens for each of the choices.
        With several choices the hold is all or nothing (max_tokens is not lowered)."""
        ask = self.ask
        partial = settings.GATEWAY_PARTIAL_MAX_TOKENS and ask.endpoint != "embeddings"
        return ledger.Plan(
            api_key_id=key.id, grant_id=key.grant_id, user_id=key.owner_id, model=model,
            prompt_tokens=prompt.upper_bound, max_completion_tokens=budget * ask.choices,
            allow_partial=partial and ask.choices == 1,
            ttl_seconds=settings.GATEWAY_REQUEST_MAX_SECONDS + HOLD_MARGIN_SECONDS,
            version=getattr(key, "cache_version", None),
        )  # fmt: skip


async def _hold_and_slot(plan: ledger.Plan, slot, request_id: str = "") -> Hold:
    """The hold and the model's slot at the same time (the round trips to PostgreSQL and to
    Redis overlap). A refused hold answers 429 whatever the slot said (the slot is given
    back, or its place in the queue left). Once the hold is placed, any failure to get the
    slot — queue full, waited too long, client gone — settles it at no charge (one ledger row)
    and gives the slot back if it was granted meanwhile. The hold's placement is never cut
    short halfway: a client leaving during it is noticed once it is placed."""
    taking = asyncio.ensure_future(slot.acquire())
    placing = asyncio.ensure_future(ledger.aplace(plan))
    try:
        hold = await asyncio.shield(placing)
    except BaseException as exc:
        hold = await _placed(placing)
        taking.cancel()
        await asyncio.gather(taking, return_exceptions=True)
        slot.release()
        if hold is not None:
            ledger.asettle(hold, ledger.Usage.unused(outcome_of(exc), request_id=request_id))
        if isinstance(exc, ApplicationError):  # QuotaExceeded, NotFound
            refusal = GatewayError.from_application_error(exc)
            if isinstance(exc, QuotaExceeded):  # which budget, and what it has left
                refusal.headers = {
                    "X-Anvil-Limited-By": exc.limit.value,
                    "X-Anvil-Credits-Remaining": str(exc.remaining),
                }
            raise refusal from None
        raise
    try:
        # The wait in the queue counts against the request's time, so no request outlives
        # its hold (which lives GATEWAY_REQUEST_MAX_SECONDS + HOLD_MARGIN_SECONDS).
        async with asyncio.timeout(settings.GATEWAY_REQUEST_MAX_SECONDS):
            await taking
    except BaseException as exc:
        slot.release()  # a cancellation can land in the turn the slot was granted in
        outcome = Outcome.CLIENT_DISCONNECTED
        if not isinstance(exc, asyncio.CancelledError):
            outcome = Outcome.CANCELLED
        ledger.asettle(hold, ledger.Usage.unused(outcome, request_id=request_id))
        if isinstance(exc, TimeoutError):
            raise QueueWaitTooLong(
                f"The model {slot.model!r} gave no slot in "
                f"{settings.GATEWAY_REQUEST_MAX_SECONDS} s, the longest a request may take.",
                retry_after=60,
            ) from None
        raise
    return hold


async def _placed(placing: asyncio.Future) -> Hold | None:
    """The hold once its placement ended (the caller was cancelled meanwhile), or None when
    it was refused or failed."""
    try:
        return await placing
    except Exception:
        return None


class QueueWaitTooLong(QueueFull):
    """Waited as long as a request may take in all without getting a slot: 503."""

    code = "queue_timeout"


def _missing_key() -> GatewayError:
    return GatewayError(
        401, "Missing API key: send Authorization: Bearer <key>.", code="invalid_api_key"
    )


def _accepted(result: AuthResult) -> ApiKey:
    if not result.ok:
        raise GatewayError(result.status, result.message, code=result.code)
    return result.key


async def aauthenticate(secret: str | None) -> ApiKey:
    if not secret:
        raise _missing_key()
    return _accepted(await aapi_key_authenticate(secret=secret))


async def akey(key_id: int) -> ApiKey:
    return _accepted(await aapi_key_standing(key_id=key_id))


def unknown_model(name: str) -> GatewayError:
    return GatewayError(
        404, f"The model '{name}' does not exist.", code="model_not_found", param="model"
    )


def check_model(*, key: ApiKey, catalog: CatalogSnapshot, name: str, endpoint: str) -> ServedModel:
    model = catalog.models.get(name)
    if model is None:
        raise unknown_model(name)
    if not model.active:
        raise GatewayError(
            503,
            f"The model '{name}' is inactive at the moment.",
            code="model_inactive",
            param="model",
            headers={"Retry-After": "60"},
        )
    if not model.healthy:
        raise GatewayError(
            503,
            f"The model '{name}' is temporarily unavailable: its backend did not answer the "
            "last health check.",
            code="model_unavailable",
            param="model",
            headers={"Retry-After": "30"},
        )
    if model.id not in catalog.allowed_for(key.grant_id):
        raise GatewayError(
            403,
            f"The grant {key.grant.identifier} may not use the model '{name}'.",
            code="model_not_allowed",
            param="model",
        )
    if model.non_commercial and key.owner.is_commercial:
        raise GatewayError(
            403,
            f"The model '{name}' is non-commercial; keys of users with a "
            "commercial affiliation can not use it.",
            code="model_not_allowed",
            param="model",
        )
    if model.kind not in ENDPOINT_KINDS[endpoint]:
        raise GatewayError(
            400,
            f"The model '{name}' is {KIND_NAMES.get(model.kind, 'a ' + model.kind)} model and "
            "can not serve this endpoint.",
            code="wrong_model_kind",
            param="model",
        )
    return model


def completion_budget(
    *, model: ServedModel, prompt: PromptSize, max_tokens: int | None, endpoint: str
) -> int:
    """Completion tokens the request may produce; 400 when it can not fit the context, in the
    words of OpenAI and vLLM, which clients (litellm, LangChain) recognise as a context overflow."""
    if endpoint == "embeddings":
        if prompt.largest_input > model.context_window:
            raise GatewayError(
                400,
                f"This model's maximum context length is {model.context_window} tokens. "
                f"However, you requested {prompt.largest_input} tokens in one input. Please "
                "reduce the length of the input.",
                code="context_length_exceeded",
                param="input",
            )
        return 0
    room = model.context_window - prompt.estimate
    if room < 1 or (max_tokens is not None and max_tokens > room):
        asked = max_tokens if max_tokens is not None else 1
        part = {"completions": "prompt", "responses": "input"}.get(endpoint, "messages")
        limit = "max_output_tokens" if endpoint == "responses" else "max_tokens"
        raise GatewayError(
            400,
            f"This model's maximum context length is {model.context_window} tokens. However, "
            f"you requested {prompt.estimate + asked} tokens ({prompt.estimate} in the {part}, "
            f"{asked} in the completion). Please reduce the length of the {part} or completion.",
            code="context_length_exceeded",
            param=limit if max_tokens is not None and room >= 1 else part,
        )
    return max_tokens if max_tokens is not None else room
