"""The hold and settle rules as sequences of statements, for any executor.

A sequence is a generator: it yields a ``Step`` (one statement of ``apps.usage.sql``) and is sent
back the row it returned (``fetch``) or the number of rows it changed; or it yields ``Atomic``
(a nested sequence to run in one transaction, rolled back when it raises ``Refused``) and is
sent back that sequence's result or the refused ``Limit``. Its return value is the result.

Two executors drive them: ``services`` through Django's connection (any database, in a thread
when called from async code), ``hot`` on an async psycopg pool straight from the event loop
(PostgreSQL). The rules — which statements, in which order, what a refusal or a missing row
means — are written here once; the services document them.

On PostgreSQL, ``hot`` runs the success path of a hold and a settlement as one statement each
(``Call``): PL/pgSQL functions (``sql.FUNCTIONS``) made of the same statements in the same
order as ``reserve`` and ``settle``; ``reserve_by_call`` and ``settle_by_call`` are their
sequences, and the tests hold both ways to the same results.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Generator
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.core.exceptions import NotFound
from apps.usage import sql
from apps.usage.credits import CREDIT_QUANTUM, affordable_completion_tokens, credits_for
from apps.usage.exceptions import Limit, QuotaExceeded
from apps.usage.models import Hold, LedgerEntry
from apps.usage.periods import period_for
from apps.usage.selectors import Budget, BudgetStatus, status_from_row

logger = logging.getLogger(__name__)

# A refused hold is retried when the budgets changed meanwhile (other requests settled).
PLACE_ATTEMPTS = 3


@dataclass(frozen=True)
class Step:
    statement: str
    params: dict
    fetch: bool = False  # send back the first row (or None) instead of the row count


@dataclass(frozen=True)
class Atomic:
    sequence: Generator


@dataclass(frozen=True)
class Call:
    """A whole transaction in one statement (a function of ``sql.FUNCTIONS``), run outside any
    transaction: sent back its first row, or ``Refused`` when it raised ``sql.REFUSED``; when
    it raised ``sql.NOT_FOUND`` the executor raises NotFound."""

    statement: str
    params: dict


class Refused(Exception):
    def __init__(self, limit: Limit) -> None:
        self.limit = limit


@dataclass(slots=True)
class HoldDraft:
    """A hold as the sequences read and fill it, without a Django model instance (building a
    ``Hold`` costs about 0.1 ms of CPU, which the gateway pays on every request). Has the
    attributes of ``Hold`` that ``place`` and ``reserve_by_call`` use."""

    api_key_id: int
    user_id: int
    grant_id: int
    model_id: int
    period: str
    prompt_tokens: int
    max_completion_tokens: int
    prompt_price: Decimal
    completion_price: Decimal
    created: dt.datetime
    expires_at: dt.datetime
    amount: Decimal = Decimal(0)
    pk: int | None = None
    # the four budgets right after the hold, when the executor read them (``reserve_by_call``)
    status: BudgetStatus | None = None
    observed: int = 0  # when this process heard ``status`` (``hot.freshest_status``)

    @property
    def id(self) -> int | None:
        return self.pk


@dataclass(frozen=True, slots=True)
class SettledEntry:
    """A ledger row as ``settle_by_call`` wrote it: the attributes of ``LedgerEntry`` without
    building a model instance (about 0.1 ms of CPU per request)."""

    pk: int
    created: dt.datetime
    api_key_id: int
    user_id: int
    grant_id: int
    model_id: int
    period: str
    prompt_tokens: int
    completion_tokens: int
    credits: Decimal
    outcome: str
    latency_ms: int
    estimated: bool
    capped: bool

    @property
    def id(self) -> int:
        return self.pk


@dataclass(frozen=True)
class Settlement:
    """A settled request: its ledger row (None when the hold was already settled or swept)
    and its four budgets right after, read in the settlement's transaction."""

    entry: LedgerEntry | SettledEntry | None
    status: BudgetStatus


Sequence = Generator[Step | Atomic, object, object]


def _hold_params(hold: Hold, **extra) -> dict:
    return {
        "key": hold.api_key_id, "grant": hold.grant_id, "user": hold.user_id,
        "period": hold.period, **extra,
    }  # fmt: skip


def _hold_month_counter(statement: str, insert: str, params: dict) -> Sequence:
    """Hold on a month counter row, inserting the row the first time in a month."""
    if (yield Step(statement, params)):
        return True
    # No row yet, or no room: make sure the row exists, then ask again.
    yield Step(insert, params)
    return bool((yield Step(statement, params)))


def reserve(hold: Hold, need: Decimal) -> Sequence:
    """Add ``hold.amount`` to the four ``held`` counters in lock order and insert the hold;
    raise Refused at the first budget that has no room."""
    params = _hold_params(hold, amount=hold.amount, need=need)
    if not (yield Step(sql.HOLD_KEY_TOTAL, params)):
        raise Refused(Limit.KEY_TOTAL)
    key_monthly = (sql.HOLD_KEY_MONTHLY, sql.KEY_MONTH_COUNTER_INSERT)
    if not (yield from _hold_month_counter(*key_monthly, params)):
        raise Refused(Limit.KEY_MONTHLY)
    member_monthly = (sql.HOLD_MEMBER_MONTHLY, sql.MEMBER_MONTH_COUNTER_INSERT)
    if not (yield from _hold_month_counter(*member_monthly, params)):
        raise Refused(Limit.MEMBER_MONTHLY)
    values = {column: getattr(hold, column) for column in sql.HOLD_INSERT_COLUMNS}
    hold.pk = (yield Step(sql.HOLD_INSERT, values, fetch=True))[0]
    if not (yield Step(sql.HOLD_GRANT, params)):
        raise Refused(Limit.GRANT)
    return hold


def atomically(sequence: Sequence) -> Sequence:
    """``sequence`` in a transaction of its own (its result, or the Limit that refused it)."""
    return (yield Atomic(sequence))


def reserve_atomically(hold: Hold, need: Decimal) -> Sequence:
    """``reserve`` in a transaction of its own: the hold, or the Limit that refused it."""
    return (yield from atomically(reserve(hold, need)))


def reserve_by_call(hold: Hold, need: Decimal) -> Sequence:
    """``reserve`` as one call of ``pg_temp.anvil_hold_reserve``."""
    values = {column: getattr(hold, column) for column in sql.HOLD_INSERT_COLUMNS}
    row = yield Call(sql.RESERVE_CALL, _hold_params(hold, need=need, **values))
    if isinstance(row, Refused):
        return row.limit
    hold.pk = row[0]
    hold.status = status_from_row(hold.period, row[1:])
    return hold


def settled_status(status: BudgetStatus, *, amount: Decimal, charge: Decimal) -> BudgetStatus:
    """The budgets of ``status`` (read right after a hold of ``amount``) once that hold is
    settled for ``charge``, as ``settle`` moves them: held - amount, used + charge on each.
    What other requests did meanwhile is not in it; the budgets read by the settlement's own
    transaction would have it."""
    moved = (
        Budget(b.name, used=b.used + charge, held=b.held - amount, limit=b.limit)
        for b in status.budgets
    )
    return BudgetStatus(status.period, *moved)


def status(*, api_key_id: int, grant_id: int, user_id: int, period: str) -> Sequence:
    params = {"key": api_key_id, "grant": grant_id, "user": user_id, "period": period}
    row = yield Step(sql.STATUS, params, fetch=True)
    if row is None:
        raise NotFound(sql.NOT_FOUND_MESSAGE)
    return status_from_row(period, row)


def _partial_tokens(hold: Hold, budgets: BudgetStatus) -> int | None:
    """The completion tokens the binding budget can still pay for, or None when not even the
    prompt plus one completion token (or the prompt alone, for prompt-only requests) fits."""
    if budgets.remaining <= 0:
        return None
    tokens = affordable_completion_tokens(
        budget=budgets.remaining,
        prompt_tokens=hold.prompt_tokens,
        max_completion_tokens=hold.max_completion_tokens,
        prompt_price=hold.prompt_price,
        completion_price=hold.completion_price,
    )
    if tokens is None or (tokens == 0 and hold.max_completion_tokens > 0):
        return None
    return tokens


def place(hold: Hold, *, allow_partial: bool, reserve=reserve_atomically) -> Sequence:
    """Hold ``hold`` (unsaved, its ``max_completion_tokens`` maybe lowered), or raise
    QuotaExceeded: up to PLACE_ATTEMPTS transactions, a status read after each refusal."""
    for _attempt in range(PLACE_ATTEMPTS):
        hold.amount = credits_for(
            prompt_tokens=hold.prompt_tokens,
            completion_tokens=hold.max_completion_tokens,
            prompt_price=hold.prompt_price,
            completion_price=hold.completion_price,
        )
        refused = yield from reserve(hold, max(hold.amount, CREDIT_QUANTUM))
        if not isinstance(refused, Limit):
            return refused  # the hold, placed
        hold.pk = None
        budgets = yield from status(
            api_key_id=hold.api_key_id, grant_id=hold.grant_id, user_id=hold.user_id,
            period=hold.period,
        )  # fmt: skip
        if allow_partial:
            tokens = _partial_tokens(hold, budgets)
            if tokens is None:
                raise QuotaExceeded(limit=budgets.limited_by, remaining=budgets.remaining)
            hold.max_completion_tokens = tokens
        elif max(hold.amount, CREDIT_QUANTUM) > budgets.remaining:
            raise QuotaExceeded(limit=budgets.limited_by, remaining=budgets.remaining)
        # Otherwise the budgets moved since the refusal (holds were settled): try again.
    raise QuotaExceeded(limit=refused, remaining=budgets.budget(refused).left or Decimal(0))


def _claimed(row: tuple) -> Hold:
    hold = Hold(**dict(zip(sql.HOLD_COLUMNS, row, strict=True)))
    for field in ("amount", "prompt_price", "completion_price"):
        setattr(hold, field, sql.credits(getattr(hold, field)))
    if isinstance(hold.created, str):
        hold.created = parse_datetime(hold.created)
    if timezone.is_naive(hold.created):  # SQLite keeps UTC without a zone
        hold.created = hold.created.replace(tzinfo=dt.UTC)
    return hold


def claim(*, hold_id: int, expired_by: dt.datetime | None = None) -> Sequence:
    """Delete the hold and return it, in one statement; None when someone else claimed it."""
    if expired_by is None:
        row = yield Step(sql.CLAIM, {"hold": hold_id}, fetch=True)
    else:
        row = yield Step(sql.CLAIM_EXPIRED, {"hold": hold_id, "now": expired_by}, fetch=True)
    return None if row is None else _claimed(row)


def _release(statement: str, hold: Hold, charge: Decimal) -> Sequence:
    """Move ``hold.amount`` out of held and ``charge`` into used on one counter row; its
    (limit, used, held). A missing row is logged, not fatal: ``counters_reconcile`` mends
    the counters."""
    params = _hold_params(hold, amount=hold.amount, charge=charge)
    row = yield Step(statement, params, fetch=True)
    if row is None:
        _missing(hold.pk, statement)
    return row


# The counters a hold sits on, in lock order (ApiKey → month counters → Grant).
HOLD_COUNTERS = (
    sql.RELEASE_KEY_TOTAL,
    sql.RELEASE_KEY_MONTHLY,
    sql.RELEASE_MEMBER_MONTHLY,
    sql.RELEASE_GRANT,
)


def withdraw(*, hold_id: int) -> Sequence:
    """Withdraw a hold as if it had never been placed (run it in one transaction): claimed
    like a settlement (so a settle, the sweeper and a withdrawal never release one hold
    twice), its amount given back to every counter, no ledger row, no charge. For a request
    refused after its hold was placed (``apps.gateway.admission``: the key read again refused
    it) and for a ready hold nobody took (``apps.gateway.ready``). True when withdrawn; False
    when it was already settled, swept or withdrawn."""
    hold = yield from claim(hold_id=hold_id)
    if hold is None:
        return False
    for statement in HOLD_COUNTERS:
        yield from _release(statement, hold, Decimal(0))
    return True


def _missing(hold_id: int, statement: str) -> None:
    logger.error("A counter row is missing, settling hold %s: %s", hold_id, statement)


def close(
    hold: Hold, *, prompt_tokens: int, completion_tokens: int, outcome: str, latency_ms: int,
    estimated: bool,
) -> Sequence:  # fmt: skip
    """Charge a claimed hold, write its ledger row; the entry and the four budgets after."""
    cost = credits_for(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        prompt_price=hold.prompt_price,
        completion_price=hold.completion_price,
    )
    charge = min(cost, hold.amount)
    key = yield from _release(sql.RELEASE_KEY_TOTAL, hold, charge)
    key_month = yield from _release(sql.RELEASE_KEY_MONTHLY, hold, charge)
    member_month = yield from _release(sql.RELEASE_MEMBER_MONTHLY, hold, charge)
    entry = LedgerEntry(
        created=timezone.now(), api_key_id=hold.api_key_id, user_id=hold.user_id,
        grant_id=hold.grant_id, model_id=hold.model_id, period=hold.period,
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, credits=charge,
        outcome=outcome, latency_ms=latency_ms, estimated=estimated, capped=cost > hold.amount,
    )  # fmt: skip
    values = {column: getattr(entry, column) for column in sql.LEDGER_INSERT_COLUMNS}
    entry.pk = (yield Step(sql.LEDGER_INSERT, values, fetch=True))[0]
    grant = yield from _release(sql.RELEASE_GRANT, hold, charge)  # last: every request's row
    if grant is None or key is None or member_month is None:
        return entry, (yield from _status_of(hold))
    # (limit, used, held) of each budget in Limit's order, as the STATUS statement reads them
    row = (*grant, *key[:3], key[3], *(key_month or (0, 0)), *member_month)
    return entry, status_from_row(hold.period, row)


def _status_of(hold: Hold) -> Sequence:
    ids = {"api_key_id": hold.api_key_id, "grant_id": hold.grant_id, "user_id": hold.user_id}
    return (yield from status(**ids, period=hold.period))


def settle(*, hold_id: int, report_for: dict | None = None, **usage) -> Sequence:
    """Claim the hold and close it (one transaction: run it inside ``Atomic``). Returns the
    ledger entry, or a ``Settlement`` when ``report_for`` gives the ``api_key_id``,
    ``grant_id`` and ``user_id`` whose budgets to report if the hold is gone."""
    hold = yield from claim(hold_id=hold_id)
    if hold is None:
        if report_for is None:
            return None
        budgets = yield from status(**report_for, period=period_for())
        return Settlement(None, budgets)
    entry, budgets = yield from close(hold, **usage)
    return entry if report_for is None else Settlement(entry, budgets)


def settle_by_call(
    *, hold_id: int, report_for: dict, max_charge: Decimal | None = None, **usage
) -> Sequence:
    """``settle`` (with ``report_for``) as one call of ``pg_temp.anvil_hold_settle``; the
    charge is at most ``max_charge`` too, when given."""
    now = timezone.now()
    report_period = period_for(now)
    row = yield Call(
        sql.SETTLE_CALL,
        {
            "hold": hold_id, "report_key": report_for["api_key_id"],
            "report_grant": report_for["grant_id"], "report_user": report_for["user_id"],
            "report_period": report_period, "created": now, "max_charge": max_charge, **usage,
        },
    )  # fmt: skip
    entry_id, api_key_id, user_id, grant_id, model_id, period, charge, capped, missing = row[:9]
    for name in missing or ():
        _missing(hold_id, sql.RELEASES[name])
    if entry_id is None:
        return Settlement(None, status_from_row(report_period, row[9:]))
    entry = SettledEntry(
        pk=entry_id, created=now, api_key_id=api_key_id, user_id=user_id, grant_id=grant_id,
        model_id=model_id, period=period, credits=charge, capped=capped, **usage,
    )  # fmt: skip
    return Settlement(entry, status_from_row(period, row[9:]))
