"""Writes of the accounting: place a hold before a request, settle it after, sweep the holds of
crashed processes, set members' monthly limits.

Holds
    ``hold_place`` reserves the largest cost a request can have against all four budgets — grant
    pool, key total, key month, member month — in one transaction of conditional UPDATEs::

        UPDATE … SET held = held + x WHERE <limit> IS NULL OR <limit> - used - held >= x

    The limit is read by the database inside the same statement (a column of the row, or a
    subquery for the monthly limits), never from a Python value that may be stale. An UPDATE
    that matches no row means the budget refuses; the transaction then rolls back, so no budget
    is ever changed by a refused request, and no number of concurrent requests can push any
    budget below zero. A request needs at least 0.000001 credits of room even when it costs
    nothing, so an exhausted budget refuses free models too ("served only while … credits left").

Lock order
    Every transaction that changes counters takes its row locks in one global order, so two
    of them can never wait for each other in a cycle (no deadlocks):

        Hold row (settle, sweep) → ApiKey → KeyMonthCounter → MemberMonthCounter → Grant

    A missing month counter row is inserted (``ON CONFLICT DO NOTHING``) at its own place in
    that order; ``hold_place`` inserts its new Hold row (which nobody else can see yet) and
    ``hold_settle`` its ledger row just before the grant. The grant row, which every request of
    a grant shares, comes last: it is locked only for the final UPDATE and the COMMIT, the
    shortest time possible. ``counters_reconcile(repair=True)`` locks in the same order.

Settling
    ``hold_settle`` claims the hold with ``DELETE … RETURNING`` — exactly one of a settle, a
    retried settle and the sweeper gets the row; the others get nothing and do nothing — and in
    the same transaction moves held → used on the four counters and appends one ledger row.

    The charge never exceeds the hold. The hold is the only amount the conditional UPDATEs have
    proven to fit in all four budgets; charging more would let a budget go below zero. The real
    cost can only exceed the hold when the backend reports more prompt tokens than the gateway
    counted or generates past ``max_completion_tokens``; then the hold is charged, the real token
    counts are recorded, and the ledger row is marked ``capped`` so the difference is visible.

SQLite
    PostgreSQL keeps credits in NUMERIC columns and all arithmetic is exact. SQLite stores
    decimals as REAL, so every sum and comparison on credit columns is rounded to the 6 places
    the columns have, which keeps it exact for amounts below 10⁹ credits. SQLite runs write
    transactions one at a time (``BEGIN IMMEDIATE``).

The statements themselves are in ``apps.usage.sql``.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Protocol

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.catalog.models import CatalogModel
from apps.core.exceptions import ApplicationError
from apps.grants.models import Grant
from apps.teams.models import Membership
from apps.usage import sql
from apps.usage.credits import CREDIT_QUANTUM, affordable_completion_tokens, credits_for
from apps.usage.exceptions import Limit, QuotaExceeded
from apps.usage.models import (
    Hold,
    KeyMonthCounter,
    LedgerEntry,
    MemberLimit,
    MemberMonthCounter,
    Outcome,
)
from apps.usage.periods import period_for
from apps.usage.selectors import BudgetStatus, budget_status

logger = logging.getLogger(__name__)

# Long enough for the slowest streamed answer; a settle after expiry finds its hold swept.
DEFAULT_HOLD_TTL_SECONDS = 15 * 60
# A refused hold is retried when the budgets changed meanwhile (other requests settled).
PLACE_ATTEMPTS = 3
SWEEP_BATCH = 500


class _Refused(Exception):
    def __init__(self, limit: Limit) -> None:
        self.limit = limit


def _hold_month_counter(statement: str, model, owner: dict, params: dict) -> bool:
    """Hold on a month counter row, inserting the row the first time in a month."""
    if sql.execute(statement, params):
        return True
    # No row yet, or no room: make sure the row exists, then ask again.
    model.objects.bulk_create([model(**owner)], ignore_conflicts=True)
    return bool(sql.execute(statement, params))


def _reserve(*, hold: Hold, need: Decimal) -> None:
    """Add ``hold.amount`` to the four ``held`` counters in lock order, or raise _Refused."""
    period, user = hold.period, hold.user_id
    params = {
        "key": hold.api_key_id, "grant": hold.grant_id, "user": user, "period": period,
        "amount": hold.amount, "need": need,
    }  # fmt: skip
    if not sql.execute(sql.HOLD_KEY_TOTAL, params):
        raise _Refused(Limit.KEY_TOTAL)
    owner = {"api_key_id": hold.api_key_id, "period": period}
    if not _hold_month_counter(sql.HOLD_KEY_MONTHLY, KeyMonthCounter, owner, params):
        raise _Refused(Limit.KEY_MONTHLY)
    owner = {"grant_id": hold.grant_id, "user_id": user, "period": period}
    if not _hold_month_counter(sql.HOLD_MEMBER_MONTHLY, MemberMonthCounter, owner, params):
        raise _Refused(Limit.MEMBER_MONTHLY)
    hold.save(force_insert=True)
    if not sql.execute(sql.HOLD_GRANT, params):
        raise _Refused(Limit.GRANT)


def _hold_try(*, hold: Hold) -> Hold | Limit:
    """One attempt: the saved hold, or the first budget (in lock order) that refused it."""
    hold.amount = credits_for(
        prompt_tokens=hold.prompt_tokens,
        completion_tokens=hold.max_completion_tokens,
        prompt_price=hold.prompt_price,
        completion_price=hold.completion_price,
    )
    try:
        with transaction.atomic():
            _reserve(hold=hold, need=max(hold.amount, CREDIT_QUANTUM))
    except _Refused as refused:
        hold.pk = None
        return refused.limit
    return hold


def _partial_tokens(hold: Hold, status: BudgetStatus) -> int | None:
    """The completion tokens the binding budget can still pay for, or None when not even the
    prompt plus one completion token (or the prompt alone, for prompt-only requests) fits."""
    if status.remaining <= 0:
        return None
    tokens = affordable_completion_tokens(
        budget=status.remaining,
        prompt_tokens=hold.prompt_tokens,
        max_completion_tokens=hold.max_completion_tokens,
        prompt_price=hold.prompt_price,
        completion_price=hold.completion_price,
    )
    if tokens is None or (tokens == 0 and hold.max_completion_tokens > 0):
        return None
    return tokens


class PricedModel(Protocol):
    """A catalog model, or a cached copy of one (the gateway's): all a hold needs of it."""

    id: int
    prompt_price: Decimal
    completion_price: Decimal


def _catalog_model(catalog_model_id: int | None, catalog_model: PricedModel | None):
    if (catalog_model_id is None) == (catalog_model is None):
        raise ValueError("Pass exactly one of catalog_model_id and catalog_model")
    if catalog_model is not None:
        return catalog_model
    return CatalogModel.objects.only("prompt_price", "completion_price").get(pk=catalog_model_id)


def hold_place(
    *,
    api_key_id: int,
    grant_id: int,
    user_id: int,
    catalog_model_id: int | None = None,
    catalog_model: PricedModel | None = None,
    prompt_tokens: int,
    max_completion_tokens: int,
    allow_partial: bool = False,
    ttl_seconds: int = DEFAULT_HOLD_TTL_SECONDS,
) -> Hold:
    """Hold the largest cost of a request against all four budgets, or raise QuotaExceeded.

    Pass the model's id, or to save a query the model itself or any copy of it with ``id``,
    ``prompt_price`` and ``completion_price`` (the gateway's cached one). With ``allow_partial``
    a request that does not fit is held for fewer completion tokens when the binding budget
    still covers the prompt and at least one of them; the returned hold's
    ``max_completion_tokens`` says how many. The common path is one transaction of four UPDATEs
    and one INSERT.
    """
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
        raise ValueError(f"ttl_seconds must be a positive integer, not {ttl_seconds!r}")
    model, now = _catalog_model(catalog_model_id, catalog_model), timezone.now()
    hold = Hold(
        api_key_id=api_key_id,
        user_id=user_id,
        grant_id=grant_id,
        model_id=model.id,
        period=period_for(now),
        prompt_tokens=prompt_tokens,
        max_completion_tokens=max_completion_tokens,
        prompt_price=model.prompt_price,
        completion_price=model.completion_price,
        created=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )
    for _attempt in range(PLACE_ATTEMPTS):
        refused = _hold_try(hold=hold)
        if isinstance(refused, Hold):
            return refused
        status = budget_status(
            api_key_id=api_key_id, grant_id=grant_id, user_id=user_id, period=hold.period
        )
        if allow_partial:
            tokens = _partial_tokens(hold, status)
            if tokens is None:
                raise QuotaExceeded(limit=status.limited_by, remaining=status.remaining)
            hold.max_completion_tokens = tokens
        elif max(hold.amount, CREDIT_QUANTUM) > status.remaining:
            raise QuotaExceeded(limit=status.limited_by, remaining=status.remaining)
        # Otherwise the budgets moved since the refusal (holds were settled): try again.
    raise QuotaExceeded(limit=refused, remaining=status.budget(refused).left or Decimal(0))


def _hold_claim(*, hold_id: int, expired_by: dt.datetime | None = None) -> Hold | None:
    """Delete the hold and return it, in one statement; None when someone else claimed it."""
    if expired_by is None:
        row = sql.fetch_one(sql.CLAIM, {"hold": hold_id})
    else:
        now = connection.ops.adapt_datetimefield_value(expired_by)
        row = sql.fetch_one(sql.CLAIM_EXPIRED, {"hold": hold_id, "now": now})
    if row is None:
        return None
    hold = Hold(**dict(zip(sql.HOLD_COLUMNS, row, strict=True)))
    for field in ("amount", "prompt_price", "completion_price"):
        setattr(hold, field, sql.credits(getattr(hold, field)))
    if isinstance(hold.created, str):
        hold.created = parse_datetime(hold.created)
    if timezone.is_naive(hold.created):  # SQLite keeps UTC without a zone
        hold.created = hold.created.replace(tzinfo=dt.UTC)
    return hold


def _release(statement: str, hold: Hold, charge: Decimal) -> None:
    """Move ``hold.amount`` out of held and ``charge`` into used on one counter row. A
    missing row is logged, not fatal: ``counters_reconcile`` mends the counters."""
    params = {
        "key": hold.api_key_id, "grant": hold.grant_id, "user": hold.user_id,
        "period": hold.period, "amount": hold.amount, "charge": charge,
    }  # fmt: skip
    if not sql.execute(statement, params):
        logger.error("A counter row is missing, settling hold %s: %s", hold.pk, statement)


def _check_settlement(outcome: str, latency_ms: int, **tokens: int) -> None:
    if outcome not in Outcome.values:
        raise ValueError(f"Unknown outcome {outcome!r}; known: {', '.join(Outcome.values)}")
    for name, value in {"latency_ms": latency_ms, **tokens}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def _hold_close(
    *, hold: Hold, prompt_tokens: int, completion_tokens: int, outcome: str, latency_ms: int,
    estimated: bool,
) -> LedgerEntry:  # fmt: skip
    cost = credits_for(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        prompt_price=hold.prompt_price,
        completion_price=hold.completion_price,
    )
    charge = min(cost, hold.amount)
    for statement in (sql.RELEASE_KEY_TOTAL, sql.RELEASE_KEY_MONTHLY, sql.RELEASE_MEMBER_MONTHLY):
        _release(statement, hold, charge)
    entry = LedgerEntry.objects.create(
        api_key_id=hold.api_key_id,
        user_id=hold.user_id,
        grant_id=hold.grant_id,
        model_id=hold.model_id,
        period=hold.period,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        credits=charge,
        outcome=outcome,
        latency_ms=latency_ms,
        estimated=estimated,
        capped=cost > hold.amount,
    )
    _release(sql.RELEASE_GRANT, hold, charge)  # last: the row every request of a grant shares
    return entry


def hold_settle(
    *,
    hold_id: int,
    prompt_tokens: int,
    completion_tokens: int,
    outcome: str,
    latency_ms: int,
    estimated: bool,
) -> LedgerEntry | None:
    """Charge the real cost of a finished request (at most its hold), release the rest and
    write its ledger row, in one transaction. A failure before the first token is settled with
    0 tokens: it costs nothing but still leaves a ledger row with its outcome. Settling a hold
    that was already settled or swept does nothing and returns None."""
    _check_settlement(
        outcome, latency_ms, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )
    with transaction.atomic():
        hold = _hold_claim(hold_id=hold_id)
        if hold is None:
            return None
        return _hold_close(
            hold=hold,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            outcome=outcome,
            latency_ms=latency_ms,
            estimated=estimated,
        )


def holds_sweep(*, now: dt.datetime | None = None) -> int:
    """Release every hold that expired by ``now`` (a crashed process's), charging nothing and
    writing an ``expired`` ledger row for each; returns how many it released. Each hold is
    claimed by a conditional delete, so concurrent sweepers and late settles never release one
    twice. Idempotent."""
    now = now or timezone.now()
    released, after = 0, 0
    while True:
        batch = list(
            Hold.objects.filter(expires_at__lte=now, pk__gt=after)
            .order_by("pk")
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        for hold_id in batch:
            released += _hold_expire(hold_id=hold_id, now=now)
        if len(batch) < SWEEP_BATCH:
            return released
        after = batch[-1]


def _hold_expire(*, hold_id: int, now: dt.datetime) -> int:
    with transaction.atomic():
        hold = _hold_claim(hold_id=hold_id, expired_by=now)
        if hold is None:
            return 0
        latency_ms = max(int((now - hold.created).total_seconds() * 1000), 0)
        _hold_close(
            hold=hold, prompt_tokens=0, completion_tokens=0, outcome=Outcome.EXPIRED,
            latency_ms=latency_ms, estimated=False,
        )  # fmt: skip
    return 1


def member_limit_set(
    *, grant: Grant, user, monthly_limit: Decimal | None, changed_by
) -> MemberLimit:
    """Set (or with None, lift) a member's monthly credit limit in a grant. Who may do it is
    the caller's access check; this refuses people outside the grant's team."""
    if not Membership.objects.filter(team_id=grant.team_id, user=user).exists():
        raise ApplicationError(f"{user} is not a member of {grant}'s team.", param="user")
    with transaction.atomic():
        member_limit, _ = MemberLimit.objects.select_for_update().get_or_create(
            grant=grant, user=user
        )
        member_limit.monthly_limit = monthly_limit
        member_limit.changed_by = changed_by
        member_limit.changed_at = timezone.now()
        try:
            member_limit.full_clean()
        except ValidationError as exc:
            message = " ".join(exc.message_dict.get("monthly_limit", exc.messages))
            raise ApplicationError(message, param="monthly_limit") from None
        member_limit.save()
    return member_limit
