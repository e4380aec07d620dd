"""The hold and settlement calls (``steps.Call``) as prepared statements, straight on libpq.

Through psycopg's cursor a call spends about 0.05 ms of CPU more in psycopg (query conversion,
parameter dumping, its prepare manager, its generators and waiting) than here; the gateway runs
two per request and may use 2 ms in all (``bench/hold_calls.py`` measures both). So each
connection of ``apps.usage.hot``'s pool prepares ``sql.RESERVE_CALL`` and ``sql.SETTLE_CALL``
once (``PREPARE``, sent with the functions when the connection is made), and ``call`` runs one
on the connection's libpq (``conn.pgconn``): the parameters as text in the statement's order,
the event loop waiting on the socket, the row read by the connection's own psycopg loaders for
its columns' types (``Transformer``), the values the cursor would return. An error comes back
as the exception psycopg raises for it.

A call cancelled while it runs (its request ended) closes the connection, which the pool then
replaces: a connection never goes back to the pool in the middle of a statement. The server may
still finish that statement; a hold so placed is unknown to the gateway and released by the
sweeper (psycopg's cursor would have sent the server a cancel request instead and waited for
the statement to end, up to 5 s).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
from dataclasses import dataclass
from decimal import Decimal

from psycopg import AsyncConnection, InterfaceError, errors, pq
from psycopg.adapt import Transformer

from apps.usage import sql

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class Prepared:
    name: str
    params: tuple[str, ...]  # the parameter names of $1, $2, …
    text: str  # the statement with $1, $2, … for its %(name)s


def prepare(name: str, statement: str) -> Prepared:
    numbers = itertools.count(1)
    text = _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", statement)
    return Prepared(name, tuple(_PLACEHOLDER.findall(statement)), text)


# The statements prepared on every connection: the statement text of a ``steps.Call`` → its
# prepared form. Their parameter types are those of the functions' arguments.
STATEMENTS = {
    sql.RESERVE_CALL: prepare("anvil_hold_reserve", sql.RESERVE_CALL),
    sql.SETTLE_CALL: prepare("anvil_hold_settle", sql.SETTLE_CALL),
}
PREPARE = ";\n".join(f"PREPARE {p.name} AS {p.text}" for p in STATEMENTS.values())


class Connection(AsyncConnection):
    """A connection that runs ``STATEMENTS`` (``PREPARE`` run on it, then ``ready()``)."""

    row_loader: Transformer

    def ready(self) -> None:
        self.row_loader = Transformer(self)


def _bool(value: bool) -> bytes:
    return b"t" if value else b"f"


def _decimal(value: Decimal) -> bytes:
    return b"NaN" if value.is_nan() else str(value).encode()  # sNaN too, as psycopg


def _text(value: object) -> bytes:
    return str(value).encode()


# A parameter in PostgreSQL's text input of its type, as psycopg sends it (a datetime as ISO
# 8601 text with its offset; a naive one is read in the connection's time zone, UTC).
_ENCODERS = {bool: _bool, int: _text, Decimal: _decimal, dt.datetime: _text, str: str.encode}


def encode(value: object) -> bytes | None:
    """A parameter's text (UTF-8, the connection's encoding), None for NULL."""
    if value is None:
        return None
    encoder = _ENCODERS.get(type(value))
    if encoder is None:  # a subclass: a TextChoices member is its value
        kind = next((kind for kind in _ENCODERS if isinstance(value, kind)), None)
        if kind is None:
            raise TypeError(f"No text form for a parameter of type {type(value).__name__}")
        encoder = _ENCODERS[kind]
    return encoder(value)


async def call(conn: Connection, prepared: Prepared, params: dict) -> tuple | None:
    """Run ``prepared`` with ``params`` on ``conn`` (in autocommit, not busy): its first row,
    None without one; a psycopg ``Error`` when the statement failed or the connection did."""
    pgconn = conn.pgconn
    pgconn.send_query_prepared(
        prepared.name.encode(), [encode(params[name]) for name in prepared.params]
    )
    try:
        result = await _result(pgconn)
    except BaseException:
        if pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
            await conn.close()  # mid-statement: the pool replaces it
        raise
    if result is None:
        raise InterfaceError(f"No result of {prepared.name}")
    if result.status == pq.ExecStatus.TUPLES_OK:
        if result.ntuples == 0:
            return None
        conn.row_loader.set_pgresult(result)
        return conn.row_loader.load_row(0, tuple)
    if result.status == pq.ExecStatus.FATAL_ERROR:
        raise errors.error_from_result(result, encoding=conn.info.encoding)
    raise InterfaceError(f"Unexpected result of {prepared.name}: {result.status}")


async def _result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """The first result of the statement sent on ``pgconn``, once the statement has ended."""
    loop = asyncio.get_running_loop()
    while pgconn.flush():  # non-blocking: what did not fit waits for the socket
        await _ready(loop.add_writer, loop.remove_writer, pgconn.socket)
    first = None
    while True:
        while pgconn.is_busy():
            await _ready(loop.add_reader, loop.remove_reader, pgconn.socket)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return first
        if first is None:
            first = result


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():  # the socket can be ready again before the waiter runs
        waiter.set_result(None)


async def _ready(add, remove, fd: int) -> None:
    """Wait until ``fd`` is ready (``add`` and ``remove``: the loop's reader or writer)."""
    waiter = asyncio.get_running_loop().create_future()
    add(fd, _wake, waiter)
    try:
        await waiter
    finally:
        remove(fd)
