"""The ledger's three operations on a request's credits: a hold is **placed**, then **settled**
or **withdrawn**, exactly once.

    hold = place(plan)          # the largest cost the request can have, held on four budgets
    entry = settle(hold, usage) # the real cost charged (``charge``), one ledger row
    withdraw(hold)              # as if never placed: no ledger row (the sweeper's expiry too)

and their async twins ``aplace``, ``asettle``, ``awithdraw`` for the gateway's event loop.

Four budgets limit a request (SPEC § Credits and limits): the grant's pool, the key's total
limit, the key's monthly limit and the member's monthly limit in the grant. Each has a ``used``
and a ``held`` counter. A hold adds its amount to the four ``held`` counters by conditional
UPDATEs (``... WHERE limit IS NULL OR limit - used - held >= need``) in one transaction: the
first budget without room refuses it and the transaction rolls back, so no number of concurrent
requests can push a budget below zero. A settlement moves the amount out of ``held`` and the
charge into ``used`` and appends the ledger row; a withdrawal only gives the amount back. Each
claims its hold by deleting it, so a settle, a withdrawal and the sweeper never end one hold
twice. Counters always equal the ledger plus the open holds (``reconcile``).

Lock order, in every transaction that changes counters (so none can deadlock): hold rows ->
ApiKey -> KeyMonthCounter -> MemberMonthCounter -> Grant, the grant (shared by every request of
a grant) last.

Where it runs:
- here, step by step through the ORM, on any database: SQLite (the embedded default), Celery
  workers, tests, management commands;
- on PostgreSQL from the event loop, ``aplace``/``asettle``/``awithdraw`` call the functions of
  migrations usage 0005 and 0007 on an async psycopg pool (``apps.usage.pg``): one round trip
  each, and settlements that finish together share one transaction (one commit for several
  requests).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.db.models import DecimalField, F, Q, Value
from django.db.models.functions import Round
from django.utils import timezone

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.limits.models import MemberLimit
from apps.usage.credits import CREDIT_QUANTUM, affordable_completion_tokens, credits_for
from apps.usage.exceptions import Limit, QuotaExceeded
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter, Outcome
from apps.usage.periods import period_for
from apps.usage.selectors import BudgetStatus, budget_status
from apps.usage.signals import ledger_row_capped
from lib.aio import keep

logger = logging.getLogger(__name__)
# One WARNING per ledger row marked ``capped`` (a request that cost more than its hold: a
# billing leak an operator should look into). Key, model and amounts only, never any text.
capped_logger = logging.getLogger("apps.usage.capped")

# Long enough for the slowest streamed answer; a settle after expiry finds its hold withdrawn.
DEFAULT_HOLD_TTL_SECONDS = 15 * 60
# A refused hold is tried again when the budgets moved meanwhile (other requests settled).
PLACE_ATTEMPTS = 3


class PricedModel(Protocol):
    """A catalog model, or the gateway's cached copy of one: all a hold needs of it."""

    id: int
    prompt_price: Decimal
    completion_price: Decimal


@dataclass(frozen=True, slots=True)
class Plan:
    """What to hold: ``prompt_tokens`` once and ``max_completion_tokens`` at the model's
    prices, for this key, grant and member. With ``allow_partial`` a request that does not fit
    is held for fewer completion tokens when the binding budget still covers the prompt and
    at least one of them; the hold's ``max_completion_tokens`` then says how many."""

    api_key_id: int
    grant_id: int
    user_id: int
    model: PricedModel
    prompt_tokens: int
    max_completion_tokens: int
    allow_partial: bool = False
    ttl_seconds: int = DEFAULT_HOLD_TTL_SECONDS
    # The key as the caller read it (its entry in the shared key cache), when the caller will
    # likely send more requests of the key: on PostgreSQL ``aplace`` then keeps the key's next
    # hold ready (``apps.usage.ready``), and takes it only for a plan of the same version.
    version: object = None

    def hold(self, max_completion_tokens: int | None = None) -> Hold:
        """The unsaved hold of this plan (for ``max_completion_tokens`` when given)."""
        ttl = self.ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise ValueError(f"ttl_seconds must be a positive integer, not {ttl!r}")
        tokens = (
            self.max_completion_tokens if max_completion_tokens is None else max_completion_tokens
        )
        now = timezone.now()
        prices = {
            "prompt_price": self.model.prompt_price,
            "completion_price": self.model.completion_price,
        }
        amount = credits_for(prompt_tokens=self.prompt_tokens, completion_tokens=tokens, **prices)
        return Hold(
            api_key_id=self.api_key_id, user_id=self.user_id, grant_id=self.grant_id,
            model_id=self.model.id, period=period_for(now), prompt_tokens=self.prompt_tokens,
            max_completion_tokens=tokens, created=now,
            expires_at=now + dt.timedelta(seconds=self.ttl_seconds),
            amount=amount, **prices,
        )  # fmt: skip


_OUTCOMES = frozenset(Outcome.values)


@dataclass(frozen=True, slots=True)
class Usage:
    """What a request consumed, as its settlement records it."""

    prompt_tokens: int
    completion_tokens: int
    outcome: str = Outcome.OK
    latency_ms: int = 0
    estimated: bool = False
    request_id: str = ""  # the answer's X-Request-ID, kept on the ledger row

    def __post_init__(self) -> None:
        if self.outcome not in _OUTCOMES:
            raise ValueError(f"Unknown outcome {self.outcome!r}; known: {', '.join(_OUTCOMES)}")
        for name in ("prompt_tokens", "completion_tokens", "latency_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")

    @classmethod
    def unused(cls, outcome: str, latency_ms: int = 0, request_id: str = "") -> Usage:
        """A request that ended before its backend generated anything: it costs nothing."""
        return cls(0, 0, outcome, latency_ms, request_id=request_id)


def charge(hold: Hold, usage: Usage) -> Decimal:
    """The one charge rule: the request's cost at the hold's prices (``credits_for``: exact,
    rounded once), never more than the hold — the only amount proven to fit in all four
    budgets. A request whose real cost exceeded its hold (the backend counted more prompt
    tokens than Anvil, or generated past max_tokens) is charged the hold and its ledger row
    marked ``capped``."""
    return _charged(hold, usage)[0]


def _charged(hold: Hold, usage: Usage) -> tuple[Decimal, bool]:
    """``charge``, and whether the real cost was above it (the row is ``capped``)."""
    cost, cap = _cost(hold, usage), _cap(hold)
    return min(cost, cap), cost > cap


def _cap(hold: Hold) -> Decimal:
    """The most ``hold`` may be charged: its amount, or less when a request took a larger
    ready hold than its own would have been (``Hold.cap``)."""
    return hold.amount if hold.cap is None else hold.cap


def _cost(hold: Hold, usage: Usage) -> Decimal:
    return credits_for(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        prompt_price=hold.prompt_price,
        completion_price=hold.completion_price,
    )


def budgets_after(hold: Hold, usage: Usage) -> BudgetStatus | None:
    """The four budgets once ``hold`` is settled for ``usage``, from the budgets its placement
    read (``hold.budgets``): what the ledger says after this request, unless other requests
    of the same budgets moved them meanwhile. None when the placement did not read them."""
    if hold.budgets is None:
        return None
    return hold.budgets.moved(held=-hold.amount, used=charge(hold, usage))


# --- place -----------------------------------------------------------------------------------


def _decimal(value: Decimal) -> Value:
    return Value(value, output_field=DecimalField(max_digits=30, decimal_places=6))


def _room(limit, used: str, held: str, need: Decimal) -> Q:
    """No limit, or room for ``need`` under it (rounded to the columns' 6 places for SQLite,
    which keeps decimals as floating point; exact on PostgreSQL)."""
    total = Round(F(used) + F(held) + _decimal(need), 6)
    return Q(**{f"{limit}__isnull": True}) | Q(**{f"{limit}__gte": total})


def _add(column: str, amount: Decimal):
    return Round(F(column) + _decimal(amount), 6)


def _hold_month(queryset, limit_filter: Q, create: dict, amount: Decimal) -> bool:
    """Hold on a month counter row, made by the first hold of the month."""
    if queryset.filter(limit_filter).update(held=_add("held", amount)):
        return True
    queryset.model.objects.get_or_create(**create)
    return bool(queryset.filter(limit_filter).update(held=_add("held", amount)))


def _reserve(hold: Hold, need: Decimal) -> Limit | None:
    """The hold's amount on the four budgets, in lock order; the budget that refused, or None."""
    amount = hold.amount
    keys = ApiKey.objects.filter(pk=hold.api_key_id, grant_id=hold.grant_id)
    if not keys.filter(_room("total_limit", "credits_used", "credits_held", need)).update(
        credits_held=_add("credits_held", amount)
    ):
        return Limit.KEY_TOTAL
    key_limit = Q(api_key__monthly_limit__isnull=True) | Q(
        api_key__monthly_limit__gte=Round(F("used") + F("held") + _decimal(need), 6)
    )
    month = {"api_key_id": hold.api_key_id, "period": hold.period}
    if not _hold_month(KeyMonthCounter.objects.filter(**month), key_limit, month, amount):
        return Limit.KEY_MONTHLY
    member = {"grant_id": hold.grant_id, "user_id": hold.user_id}
    limit = MemberLimit.objects.filter(**member).values_list("monthly_limit", flat=True).first()
    member_limit = Q()
    if limit is not None:
        member_limit = Q(held__lte=Round(_decimal(limit) - F("used") - _decimal(need), 6))
    counters = MemberMonthCounter.objects.filter(**member, period=hold.period)
    if not _hold_month(counters, member_limit, {**member, "period": hold.period}, amount):
        return Limit.MEMBER_MONTHLY
    hold.save(force_insert=True)
    grants = Grant.objects.filter(pk=hold.grant_id)
    if not grants.filter(
        credits_allocated__gte=Round(F("credits_used") + F("credits_held") + _decimal(need), 6)
    ).update(credits_held=_add("credits_held", amount)):
        return Limit.GRANT
    return None


class _Refused(Exception):
    def __init__(self, limit: Limit) -> None:
        self.limit = limit


def _reserve_atomically(hold: Hold, need: Decimal) -> Limit | None:
    try:
        with transaction.atomic():
            refused = _reserve(hold, need)
            if refused is not None:
                raise _Refused(refused)  # rolls back what the transaction changed
    except _Refused as exc:
        hold.pk = None
        return exc.limit
    return None


def _next_try(plan: Plan, hold: Hold, refused: Limit, budgets: BudgetStatus) -> Hold:
    """After a refusal: the hold to try next (fewer completion tokens with ``allow_partial``,
    the same when the budgets moved since), or QuotaExceeded."""
    if plan.allow_partial:
        tokens = _affordable(hold, budgets)
        if tokens is None:
            raise QuotaExceeded(limit=budgets.limited_by, remaining=budgets.remaining)
        return plan.hold(tokens)
    if max(hold.amount, CREDIT_QUANTUM) > budgets.remaining:
        raise QuotaExceeded(limit=budgets.limited_by, remaining=budgets.remaining)
    return plan.hold(hold.max_completion_tokens)


def _affordable(hold: Hold, budgets: BudgetStatus) -> int | None:
    """The completion tokens the binding budget can still pay for; None when not even the
    prompt and one completion token (the prompt alone for prompt-only requests) fit."""
    if budgets.remaining <= 0:
        return None
    tokens = affordable_completion_tokens(
        budget=budgets.remaining, prompt_tokens=hold.prompt_tokens,
        max_completion_tokens=hold.max_completion_tokens,
        prompt_price=hold.prompt_price, completion_price=hold.completion_price,
    )  # fmt: skip
    if tokens is None or (tokens == 0 and hold.max_completion_tokens > 0):
        return None
    return tokens


def _status(hold: Hold) -> BudgetStatus:
    return budget_status(
        api_key_id=hold.api_key_id, grant_id=hold.grant_id, user_id=hold.user_id,
        period=hold.period,
    )  # fmt: skip


def place(plan: Plan) -> Hold:
    """Hold the largest cost of ``plan`` against the four budgets, or raise QuotaExceeded
    naming the binding budget. A request needs at least 0.000001 credits of room even when it
    costs nothing, so an exhausted budget refuses free models too. The budgets right after
    it are read into ``hold.budgets`` (one more query; the async way reads them in the same
    call)."""
    hold = plan.hold()
    for _attempt in range(PLACE_ATTEMPTS):
        refused = _reserve_atomically(hold, max(hold.amount, CREDIT_QUANTUM))
        if refused is None:
            hold.budgets = _status(hold)
            return hold
        hold = _next_try(plan, hold, refused, _status(hold))
    raise QuotaExceeded(limit=refused, remaining=_status(hold).budget(refused).left or Decimal(0))


# --- settle and withdraw ---------------------------------------------------------------------


def _claim(hold: Hold, expired_by: dt.datetime | None = None) -> bool:
    """Delete the hold, so it ends exactly once: False when it was already settled, withdrawn
    or swept (a concurrent claim waits for the row and then finds it gone), or, with
    ``expired_by``, has not expired by then."""
    holds = Hold.objects.filter(pk=hold.pk)
    if expired_by is not None:
        holds = holds.filter(expires_at__lte=expired_by)
    return holds.delete()[0] > 0


def _move(hold: Hold, used: Decimal) -> None:
    """``held -= amount`` and ``used += used`` on the hold's four counters, in lock order."""
    amount = -hold.amount
    lifetime = {
        "credits_held": _add("credits_held", amount),
        "credits_used": _add("credits_used", used),
    }
    monthly = {"held": _add("held", amount), "used": _add("used", used)}
    ApiKey.objects.filter(pk=hold.api_key_id).update(**lifetime)
    KeyMonthCounter.objects.filter(api_key_id=hold.api_key_id, period=hold.period).update(**monthly)
    MemberMonthCounter.objects.filter(
        grant_id=hold.grant_id, user_id=hold.user_id, period=hold.period
    ).update(**monthly)
    Grant.objects.filter(pk=hold.grant_id).update(**lifetime)


def settle(hold: Hold, usage: Usage) -> LedgerEntry | None:
    """Charge ``usage`` (``charge``: at most the hold), release the rest and write the ledger
    row, in one transaction. Returns the row; None when the hold had already ended."""
    with transaction.atomic():
        if not _claim(hold):
            return None
        fields = _entry_fields(hold, usage)
        _move(hold, fields["credits"])
        entry = LedgerEntry.objects.create(**fields)
    if entry.capped:
        warn_capped(hold, usage, entry)
    return entry


def warn_capped(hold: Hold, usage: Usage, entry: LedgerEntry) -> None:
    """Log a ``capped`` ledger row at WARNING: what was held, what the request really cost;
    and send ``ledger_row_capped`` (a receiver's failure never reaches the settlement)."""
    cost = _cost(hold, usage)
    capped_logger.warning(
        "Capped: request of key %s on model %s cost %s credits, held %s (charged %s)",
        hold.api_key_id, hold.model_id, cost, hold.amount, entry.credits,
        extra={
            "api_key_id": hold.api_key_id, "model_id": hold.model_id, "hold_id": hold.pk,
            "hold_amount": str(hold.amount), "real_cost": str(cost),
            "charged": str(entry.credits), "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "ledger_entry_id": entry.pk,
        },
    )  # fmt: skip
    ledger_row_capped.send_robust(sender=LedgerEntry, hold=hold, entry=entry)


def _entry_fields(hold: Hold, usage: Usage) -> dict:
    """The ledger row of ``hold`` settled for ``usage`` (its credits: ``charge``)."""
    credits, capped = _charged(hold, usage)
    return dict(
        created=timezone.now(), api_key_id=hold.api_key_id, user_id=hold.user_id,
        grant_id=hold.grant_id, model_id=hold.model_id, period=hold.period,
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        credits=credits, outcome=usage.outcome, latency_ms=usage.latency_ms,
        estimated=usage.estimated, capped=capped, hold_id=hold.pk, request_id=usage.request_id,
    )  # fmt: skip


def withdraw(hold: Hold, *, expired_by: dt.datetime | None = None) -> bool:
    """Give the hold back as if it had never been placed: no ledger row, nothing charged.
    With ``expired_by`` only a hold that expired by then (the sweeper). False when it had
    already ended (or has not expired)."""
    with transaction.atomic():
        if not _claim(hold, expired_by):
            return False
        _move(hold, Decimal(0))
        return True


# --- async -----------------------------------------------------------------------------------


@functools.cache
def on_event_loop() -> bool:
    """Whether the async operations run on the event loop (PostgreSQL) or in a thread: read
    once (``connection`` is a per-context proxy, a lookup that cost 0.08 ms per request)."""
    return connection.vendor == "postgresql"


async def aplace(plan: Plan) -> Hold:
    """``place`` for async code: on PostgreSQL one call of ``anvil_place`` per try from the
    event loop, reading the four budgets right after the hold into ``hold.budgets``."""
    if not on_event_loop():
        return await sync_to_async(place, thread_sensitive=False)(plan)
    from apps.usage import pg, ready

    if ready.enabled():
        return await ready.registry().place(plan)
    return await pg.place(plan)


_settling: set[asyncio.Future] = set()


def asettle(hold: Hold, usage: Usage) -> asyncio.Future:
    """``settle`` for async code, started now: returns a future of the ledger row (None when
    the hold had already ended). Nobody has to await it: the gateway answers while it runs,
    and ``adrain`` (at shutdown) waits for every one still running. On PostgreSQL the
    settlements that finish while one is being written go together in the next transaction."""
    if on_event_loop():
        from apps.usage import pg, ready

        placements = ready.registry().ending(hold, lambda: charge(hold, usage))
        if placements:  # ready holds that count this one as held: written after them
            settling = keep(asyncio.ensure_future(_settle_after(placements, hold, usage)))
        else:
            settling = pg.settle(hold, usage)
    else:
        settling = asyncio.ensure_future(sync_to_async(settle, thread_sensitive=False)(hold, usage))
    _settling.add(settling)
    settling.add_done_callback(_settled)
    return keep(settling)


async def _settle_after(placements: list[asyncio.Future], hold: Hold, usage: Usage):
    from apps.usage import pg

    await asyncio.gather(*placements, return_exceptions=True)
    return await pg.settle(hold, usage)


def _settled(settling: asyncio.Future) -> None:
    _settling.discard(settling)
    if not settling.cancelled() and settling.exception() is not None:
        logger.error("A settlement failed; its hold is withdrawn when it expires",
                     exc_info=settling.exception())  # fmt: skip


async def awithdraw(hold: Hold) -> bool:
    """``withdraw`` for async code."""
    if not on_event_loop():
        return await sync_to_async(withdraw, thread_sensitive=False)(hold)
    from apps.usage import pg, ready

    placements = ready.registry().ending(hold, lambda: Decimal(0))
    await asyncio.gather(*placements, return_exceptions=True)
    return await pg.withdraw(hold)


async def adrain() -> None:
    """Withdraw the ready holds and wait for every settlement this event loop started (a
    graceful shutdown; another loop of the process, such as the jobs', drains its own)."""
    if on_event_loop():
        from apps.usage import ready

        await ready.registry().withdraw_all()
    loop = asyncio.get_running_loop()
    while mine := [settling for settling in _settling if settling.get_loop() is loop]:
        await asyncio.gather(*mine, return_exceptions=True)
