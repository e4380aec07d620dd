"""``apps.usage.prepared``: a call on libpq gives what psycopg's cursor gives for the same
statement — the same values of the same types, the same errors — and a call cut short (its
request cancelled, its connection lost) never leaves a busy connection in the pool."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal

import psycopg
import pytest
import uvloop
from django.db import connection

from apps.usage import hot, prepared, sql
from apps.usage.hot import ahold_place, ahold_settle
from apps.usage.models import Hold, LedgerEntry, Outcome
from apps.usage.tests.conftest import make_key

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the calls are PostgreSQL's"),
]

RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


async def connect() -> prepared.Connection:
    conn = await prepared.Connection.connect(hot._conninfo(), autocommit=True)
    conn.ready()
    return conn


async def on_new_connection(statement: str, use):
    """``use(conn, prepared_statement)`` on a new connection where ``statement`` is prepared."""
    conn = await connect()
    statement = prepared.prepare("anvil_test", statement)
    try:
        await conn.execute(f"PREPARE {statement.name} AS {statement.text}")
        return await use(conn, statement)
    finally:
        await conn.close()


def each_way(statement: str, params: dict | None = None, run=asyncio.run) -> dict:
    """{way: the row, or the error and its diagnostics} of ``statement`` through the cursor and
    through ``prepared.call``, on one connection."""
    params = params or {}

    async def outcome(ways):
        try:
            return ("row", await ways)
        except psycopg.Error as exc:
            diag = (exc.sqlstate, exc.diag.message_primary, exc.diag.message_detail)
            return ("error", type(exc), diag)

    async def use(conn, statement_prepared):
        cursor = conn.cursor()
        by_cursor = await outcome(_fetch(cursor, statement, params))
        by_call = await outcome(prepared.call(conn, statement_prepared, params))
        return {"cursor": by_cursor, "call": by_call}

    return run(on_new_connection(statement, use))


async def _fetch(cursor, statement: str, params: dict):
    await cursor.execute(statement, params)
    return await cursor.fetchone()


def typed(outcome: tuple) -> tuple:
    """A row with each value's type and text, so 1 and Decimal(1), 1.0 and 1.000 differ (and
    NaN is NaN)."""
    kind, *rest = outcome
    if kind != "row" or rest[0] is None:
        return outcome
    return tuple((type(value), repr(value)) for value in rest[0])


def test_it_turns_placeholders_into_numbered_parameters_in_order():
    statement = prepared.prepare("anvil_x", "SELECT f(%(hold)s, %(key)s, %(hold)s)")

    assert statement.text == "SELECT f($1, $2, $3)"
    assert statement.params == ("hold", "key", "hold")
    assert prepared.STATEMENTS[sql.RESERVE_CALL].params[:4] == ("key", "grant", "user", "period")


@pytest.mark.parametrize(
    "columns",
    [
        # bigint: ids
        "9223372036854775807::bigint, '-9223372036854775808'::bigint, 0::bigint, NULL::bigint",
        # numeric: budgets (NULL: no limit), charges, at their scale
        "NULL::numeric, 0::numeric, 0.000000::numeric, 1000000000.000000::numeric",
        "-123456789012345678901234567890.123456::numeric, '1E+30'::numeric, 'NaN'::numeric",
        "-0.000001::numeric, 123.450000::numeric, ROUND(2::numeric / 3, 6)",
        # text and boolean: the period, capped
        "'2025-06'::text, ''::text, 'zażółć gęślą'::text, NULL::text",
        "true, false, NULL::boolean",
        # text[]: the releases that found no row
        "ARRAY['key_total', 'member_monthly']::text[], '{}'::text[], NULL::text[]",
        """ARRAY[NULL, 'NULL', '', 'a b', 'quo"te', 'back\\slash', 'comma,{brace}']::text[]""",
    ],
)
def test_it_reads_each_column_type_as_the_cursor_does(columns):
    outcomes = each_way(f"SELECT {columns}")

    assert outcomes["call"][0] == "row"
    assert typed(outcomes["call"]) == typed(outcomes["cursor"])


def test_it_reads_the_values_themselves():
    _, row = each_way(
        "SELECT NULL::numeric, -12345678901234567890.000001::numeric, 1.500000::numeric,"
        """ 42::bigint, true, ARRAY['grant', NULL, 'a "b"']::text[]"""
    )["call"]

    assert row == (
        None, Decimal("-12345678901234567890.000001"), Decimal("1.500000"), 42, True,
        ["grant", None, 'a "b"'],
    )  # fmt: skip
    assert str(row[2]) == "1.500000"  # the column's scale kept, as the cursor keeps it


def test_it_reads_no_row_as_none():
    outcomes = each_way("SELECT 1 WHERE false")

    assert outcomes["call"] == outcomes["cursor"] == ("row", None)


EAST = dt.timezone(dt.timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    "values",
    [
        {"n": 1, "i": 0, "d": Decimal("0.000001"), "s": "2025-06", "b": False},
        {"n": 2**63 - 1, "i": -(2**31), "d": Decimal("-123456789012345678901234.123456"),
         "s": "zażółć", "b": True},
        {"n": -1, "i": 2**31 - 1, "d": Decimal("1E+3"), "s": Outcome.CLIENT_DISCONNECTED,
         "b": True},
        {"n": None, "i": None, "d": None, "s": None, "b": None},
        {"n": 7, "i": 7, "d": Decimal("-0"), "s": "", "b": False},
    ],
)  # fmt: skip
@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2025, 6, 30, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2025, 7, 1, 5, 29, 59, 1, tzinfo=EAST),  # June in UTC
        dt.datetime(2025, 6, 1, 0, 0),  # naive: read as UTC, as the connection's time zone
    ],
)
def test_it_sends_parameters_as_the_cursor_does(values, moment):
    statement = (
        "SELECT %(n)s::bigint, %(i)s::integer, %(d)s::numeric, %(s)s::text, %(b)s::boolean,"
        " %(t)s::timestamptz, to_char(%(t)s::timestamptz, 'YYYY-MM')"
    )
    outcomes = each_way(statement, {**values, "t": moment})

    assert outcomes["call"][0] == "row"
    assert typed(outcomes["call"]) == typed(outcomes["cursor"])
    row = outcomes["call"][1]
    assert row[:5] == tuple(values.values())
    assert row[5] == (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC))
    assert row[6] == "2025-06"


def test_it_refuses_a_parameter_it_has_no_text_for_before_sending_anything():
    async def use(conn, statement):
        with pytest.raises(TypeError, match="float"):
            await prepared.call(conn, statement, {"x": 1.5})
        return await prepared.call(conn, statement, {"x": Decimal("1.5")})

    assert asyncio.run(on_new_connection("SELECT %(x)s::numeric", use)) == (Decimal("1.5"),)


def test_it_raises_the_error_the_cursor_raises():
    outcomes = each_way("SELECT 1 / %(zero)s::integer", {"zero": 0})

    assert outcomes["call"] == outcomes["cursor"]
    assert outcomes["call"][1] is psycopg.errors.DivisionByZero


def test_it_raises_an_error_of_the_same_kind_for_a_value_out_of_range():
    # The cursor sends 2**31 as a bigint, which the cast refuses; the call as the integer the
    # statement was prepared with, which PostgreSQL refuses to read: the same error, other words.
    outcomes = each_way("SELECT %(big)s::integer", {"big": 2**31})

    (_, cursor_error, (cursor_state, *_)), (_, call_error, (call_state, *_)) = outcomes.values()
    assert call_error is cursor_error is psycopg.errors.NumericValueOutOfRange
    assert call_state == cursor_state


def test_it_raises_a_functions_own_error_with_its_state_and_detail_and_goes_on():
    async def scenario():
        conn = await connect()
        try:
            await conn.execute(
                "CREATE FUNCTION pg_temp.refuse(_limit text) RETURNS bigint LANGUAGE plpgsql"
                " AS $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'AV429', MESSAGE = 'refused',"
                " DETAIL = _limit; END $$"
            )
            statement = prepared.prepare("anvil_refuse", "SELECT pg_temp.refuse(%(limit)s)")
            await conn.execute(f"PREPARE {statement.name} AS {statement.text}")
            with pytest.raises(psycopg.Error) as refused:
                await prepared.call(conn, statement, {"limit": "key_monthly"})
            status = conn.pgconn.transaction_status
            after = await (await conn.execute("SELECT 1")).fetchone()
            return refused.value, status, after
        finally:
            await conn.close()

    error, status, after = asyncio.run(scenario())
    assert (error.sqlstate, error.diag.message_primary) == ("AV429", "refused")
    assert error.diag.message_detail == "key_monthly"
    assert status == psycopg.pq.TransactionStatus.IDLE
    assert after == (1,)


def _terminate(pid: int) -> None:
    """End the server's session ``pid`` and wait until it has ended."""
    with psycopg.connect(hot._conninfo(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


@pytest.mark.parametrize("loop", RUNNERS)
def test_a_call_cancelled_midway_ends_at_once_and_closes_its_connection(loop):
    async def use(conn, statement):
        pid = conn.info.backend_pid
        call = asyncio.ensure_future(prepared.call(conn, statement, {}))
        await asyncio.sleep(0.2)
        call.cancel()
        started = time.monotonic()
        try:
            with pytest.raises(asyncio.CancelledError):
                await call
            return time.monotonic() - started, conn.closed
        finally:
            await asyncio.to_thread(_terminate, pid)  # the server still runs the statement

    waited, closed = RUNNERS[loop](on_new_connection("SELECT pg_sleep(30)", use))
    assert waited < 1
    assert closed


def _lock_grant(grant_id: int) -> psycopg.Connection:
    """A transaction of another client holding the grant's row (every hold updates it)."""
    locker = psycopg.connect(hot._conninfo())
    locker.execute("SELECT 1 FROM grants_grant WHERE id = %s FOR UPDATE", [grant_id])
    return locker


def _recording(monkeypatch) -> list:
    """The connections ``prepared.call`` runs on, in order."""
    used, call = [], prepared.call

    async def recorded(conn, statement, params):
        used.append(conn)
        return await call(conn, statement, params)

    monkeypatch.setattr(prepared, "call", recorded)
    return used


@pytest.mark.parametrize("loop", RUNNERS)
def test_a_hold_cancelled_while_it_waits_never_returns_its_connection_busy(
    world, loop, monkeypatch
):
    key = make_key(world)
    owner = {"api_key_id": key.pk, "grant_id": key.grant_id, "user_id": key.owner_id}
    request = {"catalog_model": world.chat_model, "prompt_tokens": 10, "max_completion_tokens": 10}
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "latency_ms": 1, "estimated": False}
    used = _recording(monkeypatch)

    async def request_served() -> None:
        hold = await ahold_place(**owner, **request)
        await ahold_settle(hold_id=hold.pk, **owner, **usage, outcome=Outcome.OK)

    async def scenario():
        await request_served()  # the pool open, its connection ready
        locker = await asyncio.to_thread(_lock_grant, key.grant_id)
        try:
            waiting = asyncio.ensure_future(ahold_place(**owner, **request))
            await asyncio.sleep(0.3)  # the hold waits for the grant's row
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            cancelled_on = used[-1]
        finally:
            await asyncio.to_thread(locker.close)  # the lock's transaction rolled back
        # Each following request gets a connection that is not in the middle of a statement.
        await asyncio.gather(*(request_served() for _ in range(5)))
        return cancelled_on, used[-10:]

    cancelled_on, then_used = RUNNERS[loop](scenario())
    assert cancelled_on.closed
    assert cancelled_on not in then_used
    assert LedgerEntry.objects.filter(outcome=Outcome.OK).count() == 6


@pytest.mark.parametrize("loop", RUNNERS)
def test_a_lost_connection_raises_and_the_pool_replaces_it(world, loop, monkeypatch, settings):
    settings.GATEWAY_DB_POOL_SIZE = 1  # the next hold runs on the connection lost
    key = make_key(world)
    owner = {"api_key_id": key.pk, "grant_id": key.grant_id, "user_id": key.owner_id}
    request = {"catalog_model": world.chat_model, "prompt_tokens": 10, "max_completion_tokens": 10}
    used = _recording(monkeypatch)

    async def scenario():
        await ahold_place(**owner, **request)  # the pool open, one connection
        await asyncio.to_thread(_terminate, used[-1].info.backend_pid)
        with pytest.raises(psycopg.OperationalError) as lost:
            await ahold_place(**owner, **request)
        lost_on = used[-1]
        return lost.value, lost_on, await ahold_place(**owner, **request), used[-1]

    error, lost_on, hold, then_used = RUNNERS[loop](scenario())
    assert error.sqlstate in (None, "57P01")  # admin_shutdown, or no reply at all
    assert lost_on.closed
    assert then_used is not lost_on
    assert Hold.objects.filter(pk=hold.pk).exists()
