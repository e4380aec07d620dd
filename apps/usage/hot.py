"""The gateway's holds and settlements from the event loop, without a thread hop.

On PostgreSQL, ``ahold_place`` and ``ahold_settle`` run the rules of ``hold_place`` and
``hold_settle_reported`` on an async psycopg connection pool: one pool per event loop,
GATEWAY_DB_POOL_SIZE connections at most, in autocommit mode. A hold and a settlement are one
statement each, a call of a PL/pgSQL function made of the statements of ``apps.usage.sql`` in
the order of ``apps.usage.steps`` (``steps.reserve_by_call``, ``steps.settle_by_call``; the
functions are created on every new connection of the pool, ``sql.FUNCTIONS``): one round trip
and one transaction, where the statements one by one cost seven or eight round trips and about
1 ms of CPU in psycopg each time. The two calls are prepared on the connection and run on its
libpq without psycopg's cursor (``apps.usage.prepared``: about 0.1 ms less CPU per request).
Commits are durable as configured on the server: the ledger must survive a crash. On SQLite
(the embedded default) they run the synchronous services in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import weakref
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from psycopg import AsyncCursor, Error
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from apps.core.exceptions import NotFound
from apps.usage import prepared, sql, steps
from apps.usage.exceptions import Limit
from apps.usage.models import Hold
from apps.usage.selectors import BudgetStatus
from apps.usage.services import (
    DEFAULT_HOLD_TTL_SECONDS,
    PricedModel,
    check_settlement,
    hold_fields,
    hold_place,
    hold_settle_reported,
    hold_withdraw,
)
from lib.aio import at_loop_shutdown

_pools: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


@functools.cache
def on_event_loop() -> bool:
    """Whether holds and settlements run on the event loop (PostgreSQL) or in a thread."""
    return connection.vendor == "postgresql"


class _Connection(prepared.Connection):
    """A connection of the pool, with the one cursor its statements other than the calls
    (``steps.Call``) use."""

    hot_cursor: AsyncCursor


def _conninfo() -> str:
    db = connection.settings_dict
    options = {
        "dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"],
        "host": db["HOST"], "port": db["PORT"],
    }  # fmt: skip
    return make_conninfo(
        **{name: str(value) for name, value in options.items() if value},
        options="-c TimeZone=UTC",  # as Django's connections
        client_encoding="UTF8",
    )


async def _open(loop: asyncio.AbstractEventLoop) -> AsyncConnectionPool:
    opened: weakref.WeakSet[_Connection] = weakref.WeakSet()

    async def configure(conn: _Connection) -> None:
        opened.add(conn)
        functions = sql.functions(durable_holds=settings.GATEWAY_DURABLE_HOLDS)
        await conn.execute(f"{functions};\n{prepared.PREPARE}")
        conn.hot_cursor = conn.cursor()
        conn.ready()

    pool = AsyncConnectionPool(
        _conninfo(),
        min_size=1,
        max_size=settings.GATEWAY_DB_POOL_SIZE,
        connection_class=_Connection,
        kwargs={"autocommit": True},
        configure=configure,
        open=False,
    )
    await pool.open()

    async def close() -> None:
        """No connection outlives its loop (a test database could not be dropped). The pool's
        own tasks are being cancelled at the same time, so what its close leaves open is
        ended here."""
        _pools.pop(loop, None)
        try:
            await pool.close(timeout=1)
        except BaseException:  # noqa: S110 - ending anyway; the connections are closed below
            pass
        for conn in list(opened):
            if not conn.closed:
                conn.pgconn.finish()

    at_loop_shutdown(loop, close)
    return pool


async def _pool() -> AsyncConnectionPool:
    loop = asyncio.get_running_loop()
    opening = _pools.get(loop)
    if opening is None:
        opening = _pools[loop] = loop.create_task(_open(loop))
    try:
        return await opening
    except BaseException:
        if opening.done():
            _pools.pop(loop, None)  # failed to open: the next request tries again
        raise


async def _on_pool(sequence: steps.Sequence):
    """Drive ``sequence`` on a connection of this loop's pool. (Its ``connection()`` context
    would add a generator context and a commit check per use. getconn and putconn cost about
    5 µs of CPU together: a free list of our own would save no more than that.)"""
    pool = await _pool()
    conn = await pool.getconn()
    try:
        return await _run(conn, sequence)
    finally:
        await pool.putconn(conn)


async def _run(conn: _Connection, sequence: steps.Sequence):
    """Drive a sequence of ``apps.usage.steps`` on one connection (one cursor)."""
    cursor = conn.hot_cursor
    result = None
    while True:
        try:
            item = sequence.send(result)
        except StopIteration as stop:
            return stop.value
        if isinstance(item, steps.Atomic):
            try:
                async with conn.transaction():
                    result = await _run(conn, item.sequence)
            except steps.Refused as refused:
                result = refused.limit
            continue
        if isinstance(item, steps.Call):
            result = await _call(conn, item)
            continue
        await cursor.execute(item.statement, item.params)
        result = await cursor.fetchone() if item.fetch else cursor.rowcount


async def _call(conn: _Connection, call: steps.Call):
    try:
        return await prepared.call(conn, prepared.STATEMENTS[call.statement], call.params)
    except Error as exc:
        return call_failed(exc)


def call_failed(exc: Error) -> steps.Refused:
    """What a ``steps.Call`` that raised ``exc`` means: a refused budget (returned), a key of
    another grant (NotFound raised), or the error itself (raised again)."""
    if exc.sqlstate == sql.REFUSED:
        return steps.Refused(Limit(exc.diag.message_detail))
    if exc.sqlstate == sql.NOT_FOUND:
        raise NotFound(exc.diag.message_primary) from None
    raise exc


async def ahold_place(
    *,
    api_key_id: int,
    grant_id: int,
    user_id: int,
    catalog_model: PricedModel,
    prompt_tokens: int,
    max_completion_tokens: int,
    allow_partial: bool = False,
    ttl_seconds: int = DEFAULT_HOLD_TTL_SECONDS,
    ahead: bool = False,
) -> Hold | steps.HoldDraft:
    """``services.hold_place`` for async code (with the model or a copy of it, not its id).
    ``ahead``: a hold placed for a request still to come (``apps.gateway.ready``); the
    budgets this process remembers for the key (``freshest_status``) leave it out, so the
    credits a request is told it has left do not count its key's next hold."""
    args = {
        "api_key_id": api_key_id, "grant_id": grant_id, "user_id": user_id,
        "catalog_model": catalog_model, "prompt_tokens": prompt_tokens,
        "max_completion_tokens": max_completion_tokens, "ttl_seconds": ttl_seconds,
    }  # fmt: skip
    if not on_event_loop():
        place = sync_to_async(hold_place, thread_sensitive=False)
        return await place(**args, allow_partial=allow_partial)
    hold = steps.HoldDraft(**hold_fields(**args))
    placed = await _on_pool(
        steps.place(hold, allow_partial=allow_partial, reserve=steps.reserve_by_call)
    )
    if placed.status is not None:
        status = placed.status
        if ahead:
            status = steps.settled_status(status, amount=placed.amount, charge=Decimal(0))
        placed.observed = _observe(api_key_id, status)
    return placed


async def ahold_settle(
    *,
    hold_id: int,
    api_key_id: int,
    grant_id: int,
    user_id: int,
    prompt_tokens: int,
    completion_tokens: int,
    outcome: str,
    latency_ms: int,
    estimated: bool,
    max_charge: Decimal | None = None,
) -> steps.Settlement:
    """``services.hold_settle_reported`` for async code: settle the hold (see ``hold_settle``)
    and return its ledger entry (None when already settled or swept) with the four budgets
    of the key and member right after, from the same transaction. ``max_charge``: the most the
    request may be charged when its hold is larger than its own would be (a ready hold of
    ``apps.gateway.ready``: PostgreSQL only, so the SQLite way never gets one)."""
    usage = {
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "outcome": outcome, "latency_ms": latency_ms, "estimated": estimated,
    }  # fmt: skip
    report_for = {"api_key_id": api_key_id, "grant_id": grant_id, "user_id": user_id}
    if not on_event_loop():
        settle = sync_to_async(hold_settle_reported, thread_sensitive=False)
        return await settle(hold_id=hold_id, **report_for, **usage)
    check_settlement(
        outcome, latency_ms, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )
    settling = steps.settle_by_call(
        hold_id=hold_id, report_for=report_for, max_charge=max_charge, **usage
    )
    settlement = await _on_pool(settling)
    _observe(api_key_id, settlement.status)
    return settlement


async def ahold_withdraw(*, hold_id: int) -> bool:
    """``services.hold_withdraw`` for async code: on the event loop's pool on PostgreSQL,
    else in a worker thread."""
    if not on_event_loop():
        return await sync_to_async(hold_withdraw, thread_sensitive=False)(hold_id=hold_id)
    return await _on_pool(steps.atomically(steps.withdraw(hold_id=hold_id)))


# The four budgets of a key as this process last heard them from PostgreSQL (a hold's or a
# settlement's own transaction), in the order the answers arrived: (arrival number, status).
_observed: dict[tuple[int, str], tuple[int, BudgetStatus]] = {}
_arrivals = itertools.count(1)
OBSERVED_KEYS = 10_000


def _observe(api_key_id: int, status: BudgetStatus) -> int:
    arrival = next(_arrivals)
    if len(_observed) >= OBSERVED_KEYS:
        _observed.clear()  # a bound, not a cache policy: a miss only means an older reading
    _observed[(api_key_id, status.period)] = (arrival, status)
    return arrival


def freshest_status(hold: steps.HoldDraft) -> BudgetStatus | None:
    """The four budgets of ``hold``'s key, with the hold in them, as recently as this process
    knows them: the hold's own reading, or a later one (a settlement or another hold of the
    key answered after it, whose transaction therefore saw this hold). A ready hold
    (``apps.gateway.ready``) is placed while the previous request still holds its credits;
    that request's settlement, heard later, has them charged instead."""
    seen = _observed.get((hold.api_key_id, hold.period))
    if seen is not None and seen[0] > hold.observed:
        return seen[1]
    return hold.status
