"""Writes of the accounting: place a hold before a request, settle it after, sweep the holds of
crashed processes.

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

The statements themselves are in ``apps.usage.sql``, their sequences in ``apps.usage.steps``
(driven here through Django's connection, and by ``apps.usage.hot`` on PostgreSQL's async pool).
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Protocol

from django.db import connection, transaction
from django.utils import timezone

from apps.catalog.models import CatalogModel
from apps.usage import ledger, steps
from apps.usage.models import Hold, LedgerEntry, Outcome
from apps.usage.periods import period_for

logger = logging.getLogger(__name__)

# Long enough for the slowest streamed answer; a settle after expiry finds its hold swept.
DEFAULT_HOLD_TTL_SECONDS = 15 * 60
PLACE_ATTEMPTS = steps.PLACE_ATTEMPTS
SWEEP_BATCH = 500


def _param(value):
    if isinstance(value, dt.datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


def _run(sequence: steps.Sequence):
    """Drive a sequence of ``apps.usage.steps`` through Django's connection."""
    result = None
    while True:
        try:
            item = sequence.send(result)
        except StopIteration as stop:
            return stop.value
        if isinstance(item, steps.Atomic):
            try:
                with transaction.atomic():
                    result = _run(item.sequence)
            except steps.Refused as refused:
                result = refused.limit
            continue
        with connection.cursor() as cursor:
            cursor.execute(item.statement, {k: _param(v) for k, v in item.params.items()})
            result = cursor.fetchone() if item.fetch else cursor.rowcount


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


def hold_new(
    *, api_key_id: int, grant_id: int, user_id: int, catalog_model: PricedModel,
    prompt_tokens: int, max_completion_tokens: int, ttl_seconds: int,
) -> Hold:  # fmt: skip
    """The unsaved hold ``hold_place`` places."""
    return Hold(**hold_fields(**locals()))


def hold_fields(
    *, api_key_id: int, grant_id: int, user_id: int, catalog_model: PricedModel,
    prompt_tokens: int, max_completion_tokens: int, ttl_seconds: int,
) -> dict:  # fmt: skip
    """The fields of a new hold (``hold_new``; ``hot.ahold_place`` makes a ``HoldDraft``)."""
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
        raise ValueError(f"ttl_seconds must be a positive integer, not {ttl_seconds!r}")
    now = timezone.now()
    return dict(
        api_key_id=api_key_id,
        user_id=user_id,
        grant_id=grant_id,
        model_id=catalog_model.id,
        period=period_for(now),
        prompt_tokens=prompt_tokens,
        max_completion_tokens=max_completion_tokens,
        prompt_price=catalog_model.prompt_price,
        completion_price=catalog_model.completion_price,
        created=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )


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
    and one INSERT (``steps.place``).
    """
    hold = hold_new(
        api_key_id=api_key_id, grant_id=grant_id, user_id=user_id,
        catalog_model=_catalog_model(catalog_model_id, catalog_model),
        prompt_tokens=prompt_tokens, max_completion_tokens=max_completion_tokens,
        ttl_seconds=ttl_seconds,
    )  # fmt: skip
    return _run(steps.place(hold, allow_partial=allow_partial))


# Outcome.values builds its list anew on every read; a settlement checks it once per request.
_OUTCOMES = frozenset(Outcome.values)


def check_settlement(outcome: str, latency_ms: int, **tokens: int) -> None:
    if outcome not in _OUTCOMES:
        raise ValueError(f"Unknown outcome {outcome!r}; known: {', '.join(Outcome.values)}")
    for name, value in {"latency_ms": latency_ms, **tokens}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


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
    check_settlement(
        outcome, latency_ms, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )
    usage = {
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "outcome": outcome, "latency_ms": latency_ms, "estimated": estimated,
    }  # fmt: skip
    with transaction.atomic():
        return _run(steps.settle(hold_id=hold_id, **usage))


def hold_settle_reported(
    *, hold_id: int, api_key_id: int, grant_id: int, user_id: int, **usage
) -> steps.Settlement:
    """``hold_settle`` that also returns the four budgets right after, from the same
    transaction (the gateway's credit headers); the key, grant and member are whose budgets
    to report when the hold was already settled or swept."""
    check_settlement(
        usage["outcome"], usage["latency_ms"],
        prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
    )  # fmt: skip
    report_for = {"api_key_id": api_key_id, "grant_id": grant_id, "user_id": user_id}
    with transaction.atomic():
        return _run(steps.settle(hold_id=hold_id, report_for=report_for, **usage))


def hold_withdraw(*, hold_id: int) -> bool:
    """Withdraw a hold as if it had never been placed (``steps.withdraw``): no ledger row."""
    with transaction.atomic():
        return _run(steps.withdraw(hold_id=hold_id))


def holds_sweep(*, now: dt.datetime | None = None) -> int:
    """Withdraw every hold that expired by ``now`` (``ledger.withdraw(hold, expired_by=now)``:
    a crashed process's, or one whose settlement failed), as if it had never been placed: no
    ledger row, nothing charged. Returns how many it withdrew. Each withdrawal claims its hold
    by a conditional delete, so concurrent sweepers, late settles and withdrawals never end one
    hold twice; run again, it finds nothing. Reads the holds in batches of SWEEP_BATCH."""
    now = now or timezone.now()
    withdrawn, after = 0, 0
    while True:
        batch = list(
            Hold.objects.filter(expires_at__lte=now, pk__gt=after).order_by("pk")[:SWEEP_BATCH]
        )
        for hold in batch:
            if ledger.withdraw(hold, expired_by=now):
                withdrawn += 1
                logger.warning(
                    "Withdrew expired credit hold %s (key %s, member %s, grant %s).",
                    hold.pk, hold.api_key_id, hold.user_id, hold.grant_id,
                )  # fmt: skip
        if len(batch) < SWEEP_BATCH:
            return withdrawn
        after = batch[-1].pk
