"""The ledger's operations from the event loop on PostgreSQL (``apps.usage.ledger`` calls these).

Each is one call of a function of migration usage 0005 (``anvil_settle``: 0009;
``anvil_place_batch``: 0008), sent as a prepared statement (psycopg's ``prepare=True``) on an
async connection pool: one pool per event loop, GATEWAY_DB_POOL_SIZE connections at most, in
autocommit mode, so a call is one round trip and one transaction.

Placements and settlements are written in batches: while one batch is being written, those
that arrive wait and go together in the next call, one transaction and one commit for all of
them. One alone is written at once, so nothing waits at low load; under load the counters'
rows (the grant's above all, which every request of a grant shares) are locked once per batch
instead of once per request.

A call cancelled halfway (its caller cancelled) is cancelled on the server too: psycopg sends
the server a cancel request and waits for the statement to end, rolled back, so a connection
always goes back to the pool idle.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone
from psycopg import AsyncConnection, Error
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from apps.core.exceptions import NotFound
from apps.usage import ledger
from apps.usage.exceptions import Limit, QuotaExceeded
from apps.usage.models import Hold, LedgerEntry
from apps.usage.selectors import NOT_FOUND_MESSAGE, STATUS, BudgetStatus, status_from_row
from lib.aio import at_loop_shutdown, keep

logger = logging.getLogger(__name__)

REFUSED = "AV429"  # anvil_place: a budget has no room; DETAIL names it

PLACE = "SELECT * FROM anvil_place(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
SETTLE = (
    "SELECT * FROM anvil_settle(%s::bigint[], %s::numeric[], %s::integer[], %s::integer[],"
    " %s::text[], %s::integer[], %s::boolean[], %s::boolean[], %s::text[], %s)"
)
PLACE_BATCH = (
    "SELECT * FROM anvil_place_batch(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],"
    " %s::text[], %s::numeric[], %s::numeric[], %s::integer[], %s::integer[], %s::numeric[],"
    " %s::numeric[], %s::timestamptz[], %s::timestamptz[], %s)"
)
WITHDRAW = "SELECT anvil_withdraw(%s, NULL)"


# --- the pool --------------------------------------------------------------------------------

_pools: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


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
    opened: weakref.WeakSet[AsyncConnection] = weakref.WeakSet()
    pool = AsyncConnectionPool(
        _conninfo(),
        min_size=1,
        max_size=settings.GATEWAY_DB_POOL_SIZE,
        kwargs={"autocommit": True, "prepare_threshold": 0},
        configure=_remember(opened),
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


def _remember(opened: weakref.WeakSet):
    async def configure(conn: AsyncConnection) -> None:
        opened.add(conn)

    return configure


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


async def _fetch(statement: str, params, *, many: bool = False):
    """Run one statement (prepared) on a connection of this loop's pool; its first row, or
    every row."""
    pool = await _pool()
    conn = await pool.getconn()
    try:
        cursor = await conn.execute(statement, params, prepare=True)
        return await (cursor.fetchall() if many else cursor.fetchone())
    finally:
        await pool.putconn(conn)


# --- place -----------------------------------------------------------------------------------


async def place(plan: ledger.Plan) -> Hold:
    """``ledger.place`` on the pool, in the next batch of placements: one call per try, the
    budgets after it in ``hold.budgets``. Cancelled while its batch is written, the hold is
    withdrawn once placed."""
    hold = plan.hold()
    for _attempt in range(ledger.PLACE_ATTEMPTS):
        placing = _batches(_place_all).add(hold)
        try:
            refused = await asyncio.shield(placing)
        except asyncio.CancelledError:
            placing.add_done_callback(lambda done, hold=hold: _withdraw_late(done, hold))
            raise
        if refused is None:
            return hold
        hold = ledger._next_try(plan, hold, refused, await status(hold))
    budgets = await status(hold)
    raise QuotaExceeded(limit=refused, remaining=budgets.budget(refused).left or Decimal(0))


def _withdraw_late(placing: asyncio.Future, hold: Hold) -> None:
    if not placing.cancelled() and placing.exception() is None and placing.result() is None:
        keep(asyncio.ensure_future(withdraw(hold)))


async def _place_all(batch: list) -> None:
    """Place the batch's holds: one alone with ``anvil_place``, several in one transaction with
    ``anvil_place_batch``. Each future gets None (placed: ``hold.pk`` and ``hold.budgets`` set)
    or the ``Limit`` that refused it. A batch that fails is placed hold by hold, so one bad
    hold fails only itself."""
    if len(batch) == 1:
        hold, placed = batch[0]
        try:
            row = await _fetch(PLACE, [*_place_row(hold), settings.GATEWAY_DURABLE_HOLDS])
        except Error as exc:
            if exc.sqlstate == REFUSED:
                _resolve(placed, Limit(exc.diag.message_detail))
            else:
                _resolve(placed, exception=exc)
            return
        _placed(hold, row)
        _resolve(placed)
        return
    holds = [hold for hold, _ in batch]
    columns = [list(column) for column in zip(*(_place_row(hold) for hold in holds), strict=True)]
    try:
        rows = await _fetch(PLACE_BATCH, [*columns, settings.GATEWAY_DURABLE_HOLDS], many=True)
    except Exception:
        for item in batch:
            await _place_all([item])
        return
    for (hold, placed), (_item, *row) in zip(batch, sorted(rows), strict=True):
        if row[1] is not None:
            _resolve(placed, Limit(row[1]))
            continue
        _placed(hold, (row[0], *row[2:]))
        _resolve(placed)


def _placed(hold: Hold, row) -> None:
    hold.pk = row[0]
    hold.budgets = status_from_row(hold.period, row[1:])


def _place_row(hold: Hold) -> tuple:
    """``anvil_place``'s arguments for ``hold``, but the last (durable)."""
    return (
        hold.api_key_id, hold.grant_id, hold.user_id, hold.model_id, hold.period, hold.amount,
        max(hold.amount, ledger.CREDIT_QUANTUM), hold.prompt_tokens, hold.max_completion_tokens,
        hold.prompt_price, hold.completion_price, hold.created, hold.expires_at,
    )  # fmt: skip


async def status(hold: Hold) -> BudgetStatus:
    """The four budgets of the hold's key and member (``selectors.budget_status``): NotFound
    when the key does not belong to the grant."""
    params = {"key": hold.api_key_id, "grant": hold.grant_id, "user": hold.user_id,
              "period": hold.period}  # fmt: skip
    row = await _fetch(STATUS, params)
    if row is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    return status_from_row(hold.period, row)


# --- batches ---------------------------------------------------------------------------------


class _Batches:
    """This loop's placements, or its settlements: those waiting, and the one task writing a
    batch at a time (with ``write``)."""

    def __init__(self, write) -> None:
        self.write_batch = write
        self.waiting: list[tuple] = []
        self.writer: asyncio.Task | None = None

    def add(self, *item) -> asyncio.Future:
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((*item, done))
        if self.writer is None:
            self.writer = keep(asyncio.ensure_future(self.write()))
        return done

    async def write(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                await self.write_batch(batch)
        finally:
            self.writer = None


_loops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _batches(write) -> _Batches:
    """This loop's batches written by ``write``."""
    mine = _loops.setdefault(asyncio.get_running_loop(), {})
    batches = mine.get(write)
    if batches is None:
        batches = mine[write] = _Batches(write)
    return batches


# --- settle, in batches ----------------------------------------------------------------------


def settle(hold: Hold, usage: ledger.Usage) -> asyncio.Future:
    """``ledger.settle`` on the pool, in the next batch: a future of the ledger row."""
    return _batches(_write).add(hold, usage)


async def _write(batch: list) -> None:
    """One transaction for the batch; when it fails, each settlement alone, so one bad
    settlement fails only itself. A hold settled twice in one batch is settled by the first
    and the second finds it ended (None), as one after the other would."""
    first = {}
    for item in batch:
        first.setdefault(item[0].pk, item)
    try:
        entries = await _settle_all([(hold, usage) for hold, usage, _ in first.values()])
    except Exception as exc:
        if len(batch) == 1:
            _resolve(batch[0][2], exception=exc)
            return
        for item in batch:
            await _write([item])
        return
    for hold, _usage, settled in batch:
        _resolve(settled, entries.get(hold.pk) if first[hold.pk][2] is settled else None)


def _resolve(settled: asyncio.Future, result=None, *, exception: BaseException | None = None):
    if settled.done():
        return
    if exception is not None:
        settled.set_exception(exception)
    else:
        settled.set_result(result)


async def _settle_all(items: list[tuple[Hold, ledger.Usage]]) -> dict[int, LedgerEntry]:
    now = timezone.now()
    columns: list[list] = [[] for _ in range(9)]
    asked = {}
    for hold, usage in items:
        fields = ledger._entry_fields(hold, usage)
        asked[hold.pk] = (hold, usage, fields)
        values = (hold.pk, fields["credits"], usage.prompt_tokens, usage.completion_tokens,
                  usage.outcome, usage.latency_ms, usage.estimated, fields["capped"],
                  usage.request_id)  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    rows = await _fetch(SETTLE, [*columns, now], many=True)
    entries = {}
    for hold_id, entry_id in rows:
        hold, usage, fields = asked[hold_id]
        entries[hold_id] = entry = LedgerEntry(**{**fields, "created": now}, pk=entry_id)
        if entry.capped:
            # Outside the context of the request whose settlement started this batch's task,
            # so the line is not put down to that request (its id, key prefix and model).
            contextvars.Context().run(ledger.warn_capped, hold, usage, entry)
    return entries


async def withdraw(hold: Hold) -> bool:
    """``ledger.withdraw`` on the pool."""
    return bool((await _fetch(WITHDRAW, [hold.pk]))[0])
