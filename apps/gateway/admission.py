"""Everything decided before a request is forwarded, in the order clients are told about:
key (401), model known (404), model active (503) and healthy (503), grant allowed (403),
non-commercial vs commercial affiliation (403), model kind fits the endpoint (400), context
window (400), credit hold (429). ``aadmit`` runs it on the event loop on PostgreSQL: key
lookup from the shared cache (async), checks against the in-memory catalog, then the hold on
the async pool (``apps.usage.hot``) — no thread hop. A key this process accepted before has
its hold and slot taken while the cache is read (``_aadmit_early``), undone without a trace
when the fresh read refuses. On SQLite it runs ``admit``, the same steps synchronously, in one
worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, replace
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.core.exceptions import ApplicationError
from apps.gateway.catalog import ENDPOINT_KINDS, CatalogSnapshot, ServedModel
from apps.gateway.errors import GatewayError
from apps.gateway.ready import limits_of, ready_holds
from apps.gateway.slots import QueueFull, model_slot
from apps.gateway.tokens import PromptSize
from apps.keys.auth import (
    AuthResult,
    aapi_key_authenticate,
    api_key_authenticate,
    recent_api_key,
)
from apps.keys.models import ApiKey
from apps.usage.credits import credits_for
from apps.usage.hot import ahold_place, ahold_settle, ahold_withdraw, on_event_loop
from apps.usage.models import Outcome
from apps.usage.services import hold_place
from lib.aio import complete

logger = logging.getLogger(__name__)

# A hold outlives the longest request by this much; only a crashed process leaves it behind.
HOLD_MARGIN_SECONDS = 120


@dataclass(frozen=True)
class Admission:
    key: ApiKey
    model: ServedModel
    hold_id: object
    prompt_estimate: int
    max_tokens: int | None  # what the backend is asked for; None when the client set none
    lowered: bool  # max_tokens was lowered to what the budget affords
    slot: object = None  # the model's slot (slots.model_slot), released by ``async with``
    # time.monotonic() before the hold was placed: the request's deadline and latency count
    # from here, queue wait included, so no request outlives its hold (placed after this)
    started: float = 0.0
    # the hold itself (amount, prices; on PostgreSQL its ``status``: the budgets right after it)
    hold: object = None
    # the most the request may be charged when its hold is larger than its own would be (a
    # ready hold placed for an earlier, larger request: apps.gateway.ready): its own hold's
    # amount; None when the hold is its own
    max_charge: Decimal | None = None


def _missing_key() -> GatewayError:
    return GatewayError(
        401, "Missing API key: send Authorization: Bearer <key>.", code="invalid_api_key"
    )


def _accepted(result: AuthResult) -> ApiKey:
    if not result.ok:
        raise GatewayError(result.status, result.message, code=result.code)
    return result.key


def authenticate(secret: str | None) -> ApiKey:
    if not secret:
        raise _missing_key()
    return _accepted(api_key_authenticate(secret=secret))


async def aauthenticate(secret: str | None) -> ApiKey:
    if not secret:
        raise _missing_key()
    return _accepted(await aapi_key_authenticate(secret=secret))


def check_model(*, key: ApiKey, catalog: CatalogSnapshot, name: str, endpoint: str) -> ServedModel:
    model = catalog.models.get(name)
    if model is None:
        raise GatewayError(
            404, f"The model '{name}' does not exist.", code="model_not_found", param="model"
        )
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
            f"The model '{name}' is a {model.kind} model and can not serve this endpoint.",
            code="wrong_model_kind",
            param="model",
        )
    return model


def completion_budget(
    *, model: ServedModel, prompt: PromptSize, max_tokens: int | None, endpoint: str
) -> int:
    """Completion tokens the request may produce; 400 when it can not fit the context."""
    if endpoint == "embeddings":
        return 0
    room = model.context_window - prompt.estimate
    if room < 1 or (max_tokens is not None and max_tokens > room):
        asked = max_tokens if max_tokens is not None else 1
        raise GatewayError(
            400,
            f"This model's context window is {model.context_window} tokens; the prompt takes "
            f"about {prompt.estimate} and max_tokens asks for {asked} "
            f"({prompt.estimate + asked} in all).",
            code="context_length_exceeded",
            param="max_tokens" if max_tokens is not None and room >= 1 else "messages",
        )
    return max_tokens if max_tokens is not None else room


@dataclass(frozen=True)
class _Plan:
    """A request that passed every check up to the hold: what the hold is and how its
    admission reads."""

    key: ApiKey
    model: ServedModel
    prompt: PromptSize
    budget: int  # completion tokens per choice
    max_tokens: int | None
    choices: int
    endpoint: str

    @property
    def hold_args(self) -> dict:
        """The hold: the prompt once, ``budget`` completion tokens for each of the choices.
        With several choices the hold is all or nothing (max_tokens is not lowered)."""
        key = self.key
        partial = settings.GATEWAY_PARTIAL_MAX_TOKENS and self.endpoint != "embeddings"
        return {
            "api_key_id": key.id,
            "grant_id": key.grant_id,
            "user_id": key.owner_id,
            # prices from the in-memory catalog: no query for the model row
            "catalog_model": self.model,
            "prompt_tokens": self.prompt.upper_bound,
            "max_completion_tokens": self.budget * self.choices,
            "allow_partial": partial and self.choices == 1,
            "ttl_seconds": settings.GATEWAY_REQUEST_MAX_SECONDS + HOLD_MARGIN_SECONDS,
        }

    def admitted(self, hold, **extra) -> Admission:
        # (a ready hold may be larger than this request's: apps.gateway.ready)
        per_choice = min(hold.max_completion_tokens // self.choices, self.budget)
        lowered = per_choice < self.budget
        return Admission(
            key=self.key,
            model=self.model,
            hold_id=hold.id,
            hold=hold,
            prompt_estimate=self.prompt.estimate,
            max_tokens=per_choice if (lowered or self.max_tokens is not None) else None,
            lowered=lowered,
            max_charge=self._max_charge(hold, per_choice * self.choices),
            **extra,
        )

    def _max_charge(self, hold, completion_tokens: int) -> Decimal | None:
        """The amount of the request's own hold when ``hold`` is larger (else None): the
        request never costs more than that, whichever hold pays for it."""
        prompt_tokens = self.prompt.upper_bound
        if hold.prompt_tokens <= prompt_tokens and hold.max_completion_tokens <= completion_tokens:
            return None
        return credits_for(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            prompt_price=hold.prompt_price,
            completion_price=hold.completion_price,
        )


def _plan(
    *, key: ApiKey, catalog: CatalogSnapshot, endpoint: str, model_name: str,
    prompt: PromptSize, max_tokens: int | None, choices: int,
) -> _Plan:  # fmt: skip
    model = check_model(key=key, catalog=catalog, name=model_name, endpoint=endpoint)
    budget = completion_budget(model=model, prompt=prompt, max_tokens=max_tokens, endpoint=endpoint)
    return _Plan(key, model, prompt, budget, max_tokens, choices, endpoint)


def admit(
    *,
    secret: str | None,
    catalog: CatalogSnapshot,
    endpoint: str,
    model_name: str,
    prompt: PromptSize,
    max_tokens: int | None,
    choices: int = 1,
) -> Admission:
    checks = {"endpoint": endpoint, "model_name": model_name, "prompt": prompt}
    plan = _plan(
        key=authenticate(secret), catalog=catalog, **checks, max_tokens=max_tokens, choices=choices
    )
    try:
        hold = hold_place(**plan.hold_args)
    except ApplicationError as exc:
        raise GatewayError.from_application_error(exc) from None
    return plan.admitted(hold)


async def aadmit(
    *,
    secret: str | None,
    catalog: CatalogSnapshot,
    endpoint: str,
    model_name: str,
    prompt: PromptSize,
    max_tokens: int | None,
    choices: int = 1,
) -> Admission:
    """``admit`` for the async views: on the event loop on PostgreSQL, else in one thread.
    The admission carries the model's slot (``slots.model_slot``; released by ``async with``
    it): on PostgreSQL it is taken while the hold is placed, so it is held already (or
    ``slots.QueueFull`` raised); on SQLite ``async with`` takes it after the hold."""
    started = time.monotonic()
    checks = {"endpoint": endpoint, "model_name": model_name, "prompt": prompt}
    if not on_event_loop():
        admission = await sync_to_async(admit, thread_sensitive=False)(
            secret=secret, catalog=catalog, **checks, max_tokens=max_tokens, choices=choices
        )
        slot = _slot_for(admission.key, admission.model)
        return replace(admission, slot=slot, started=started)
    plan_for = functools.partial(
        _plan, catalog=catalog, **checks, max_tokens=max_tokens, choices=choices
    )
    guess = _guess(secret, plan_for)
    if guess is not None:
        return await _aadmit_early(secret, guess, plan_for, started)
    return await _aadmit_planned(plan_for(key=await aauthenticate(secret)), started)


async def _aadmit_planned(plan: _Plan, started: float) -> Admission:
    slot = _slot_for(plan.key, plan.model)
    hold = await _ahold_taking(plan.hold_args, slot)
    _replenish(plan)
    return plan.admitted(hold, slot=slot, started=started)


def _replenish(plan: _Plan) -> None:
    """A ready hold for the key's next request to this model (apps.gateway.ready)."""
    registry = ready_holds()
    if registry is not None:
        registry.replenish(plan.hold_args, plan.key)


async def _ahold_ready(ready: asyncio.Future, args: dict):
    """The ready hold's placement; when it failed (refused: it was placed for an earlier,
    larger request), the request's own hold instead."""
    try:
        return await ready
    except Exception:  # refused for its size (or failed): the request's own hold decides
        return await _ahold(args)


def _guess(secret: str | None, plan_for) -> _Plan | None:
    """The plan for the key this process last accepted for ``secret`` (its digest compared,
    every check of the key passed on that copy), when it passes every check too; else None,
    and the request is admitted step by step (so whatever it is told, the key comes first)."""
    key = recent_api_key(secret=secret) if secret else None
    if key is None:
        return None
    try:
        return plan_for(key=key)
    except GatewayError:
        return None


def _holder(plan: _Plan) -> tuple:
    """Whose budgets the plan's hold takes from (the rest of it does not depend on the key)."""
    return plan.key.id, plan.key.grant_id, plan.key.owner_id


async def _aadmit_early(secret: str, guess: _Plan, plan_for, started: float) -> Admission:
    """Admit on the plan of a key accepted before, reading the key again meanwhile: the hold
    (PostgreSQL) and the slot are taken while the key cache's GET is out (written with the
    slot's script, one round trip for both), so the read adds no round trip of its own.
    What the request is told is what the fresh read says, checked as in ``aadmit``'s other
    way: refused (revoked, expired, the owner now commercial…), the hold is withdrawn without
    a trace (no ledger row, as for any refused request) and the slot given back before the
    refusal is raised; so is everything on any exit before the hold is in hand (a client's
    disconnect included). From then on it is the same as the other way."""
    args = guess.hold_args
    slot = _slot_for(guess.key, guess.model)
    registry = ready_holds()
    ready = registry.take(args, guess.key) if registry is not None else None
    # In this order, so the hold's query goes out first and the slot's script (queued one turn
    # of the loop after ``taking`` starts) in the same write as the GET (``resp``).
    if ready is None:
        placing = asyncio.ensure_future(_ahold(args))
    else:
        placing = asyncio.ensure_future(_ahold_ready(ready, args))
    taking = asyncio.ensure_future(slot.acquire())
    reading = asyncio.ensure_future(aapi_key_authenticate(secret=secret, accepted=guess.key))
    try:
        plan = plan_for(key=_accepted(await reading))
        same = _holder(plan) == _holder(guess)
        if ready is not None and limits_of(plan.key) != limits_of(guess.key):
            same = False  # the ready hold was placed under other limits: not used
        if same:
            hold = await asyncio.shield(placing)  # a disconnect meanwhile: placed, withdrawn
    except BaseException:
        await complete(_withdraw(placing, taking, slot))
        raise
    if not same:  # the key's row names another grant or owner now: start again with it
        await complete(_withdraw(placing, taking, slot))
        return await _aadmit_planned(plan, started)
    hold = await _slot_taken(args, slot, taking, hold)
    _replenish(plan)
    return plan.admitted(hold, slot=slot, started=started)


async def _withdraw(placing: asyncio.Future, taking: asyncio.Future, slot) -> None:
    """Undo an early admission before its hold was in hand: the slot given back (or its place
    in the queue left), the hold waited for and withdrawn (no charge, no ledger row)."""
    taking.cancel()
    await asyncio.gather(taking, return_exceptions=True)
    try:
        await slot.__aexit__(None, None, None)  # a slot taken before the cancel is released
    finally:
        (hold,) = await asyncio.gather(placing, return_exceptions=True)
        if not isinstance(hold, BaseException):
            try:
                await ahold_withdraw(hold_id=hold.id)
            except Exception:  # the refusal is still told; the sweeper ends the hold
                logger.exception("Withdrawing hold %s failed; it expires instead", hold.id)


def _slot_for(key: ApiKey, model: ServedModel):
    return model_slot(
        model=model.name,
        max_concurrency=model.max_concurrency,
        queue_size=model.queue_size,
        grant_id=key.grant_id,
    )


async def _ahold(args: dict):
    try:
        return await ahold_place(**args)
    except ApplicationError as exc:
        raise GatewayError.from_application_error(exc) from None


async def _ahold_taking(args: dict, slot):
    """The hold and the model's slot at the same time (two round trips, to PostgreSQL and to
    Redis, overlap instead of following each other). The errors keep their order: a refused
    hold answers 429 whatever the slot said (the slot is given back, or its place in the
    queue left); a full queue answers 503 after the hold is released at no charge."""
    taking = asyncio.ensure_future(slot.acquire())
    try:
        hold = await _ahold(args)
    except BaseException:
        taking.cancel()
        await asyncio.gather(taking, return_exceptions=True)
        await slot.__aexit__(None, None, None)  # a slot taken before the cancel is released
        raise
    return await _slot_taken(args, slot, taking, hold)


async def _slot_taken(args: dict, slot, taking: asyncio.Future, hold):
    """The hold is placed: wait for the slot being taken. Any failure or cancellation gives
    the slot back and releases the hold at no charge (one ledger row)."""
    try:
        # The wait in the queue counts against the request's time, so no request outlives
        # its hold (which lives GATEWAY_REQUEST_MAX_SECONDS + HOLD_MARGIN_SECONDS).
        async with asyncio.timeout(settings.GATEWAY_REQUEST_MAX_SECONDS):
            await taking
    except BaseException as exc:
        outcome = Outcome.CLIENT_DISCONNECTED
        if not isinstance(exc, asyncio.CancelledError):
            outcome = Outcome.CANCELLED
        try:
            # A cancellation can land in the turn the slot was granted in: it is taken then.
            await slot.__aexit__(None, None, None)
        finally:
            await _release_unused(args, hold.id, outcome)
        if isinstance(exc, TimeoutError):
            raise QueueWaitTooLong(
                f"The model {args['catalog_model'].name!r} gave no slot in "
                f"{settings.GATEWAY_REQUEST_MAX_SECONDS} s, the longest a request may take.",
                retry_after=60,
            ) from None
        raise
    return hold


class QueueWaitTooLong(QueueFull):
    """Waited as long as a request may take in all without getting a slot: 503."""

    code = "queue_timeout"


async def aabandon(admission: Admission) -> None:
    """Undo an admission whose request will not be forwarded (something failed between the
    admission and the relay, which owns the slot and the hold from then on): the slot back,
    the hold released at no charge."""
    registry = ready_holds()
    if registry is not None:  # the request ended: its key's ready hold waits from now
        registry.arm(admission.key.id, admission.model.id)
    try:
        await admission.slot.__aexit__(None, None, None)
    finally:
        key = admission.key
        args = {"api_key_id": key.id, "grant_id": key.grant_id, "user_id": key.owner_id}
        await _release_unused(args, admission.hold_id, Outcome.CANCELLED)


async def _release_unused(args: dict, hold_id: int, outcome: str) -> None:
    """Settle a hold whose request never reached the backend: no charge, one ledger row."""
    owner = {name: args[name] for name in ("api_key_id", "grant_id", "user_id")}
    unused = {"prompt_tokens": 0, "completion_tokens": 0, "latency_ms": 0, "estimated": False}
    await complete(ahold_settle(hold_id=hold_id, **owner, **unused, outcome=outcome))
