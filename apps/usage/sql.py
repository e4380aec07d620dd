"""The statements of the hot path, written out once.

Every request runs a hold, a settlement and a status read — about a dozen statements. Compiling
them through the ORM costs far more CPU than running them (``resolve_expression`` and
``compile`` of conditional expressions take most of the time), and the gateway may add at most
2 ms to a request, so they are plain SQL here, in the dialect PostgreSQL and SQLite share.
The rules behind them are in ``apps.usage.services``; the tests run every one of them. On
PostgreSQL the gateway runs them inside two PL/pgSQL functions made of these texts (``FUNCTIONS``,
below), one round trip per hold and per settlement.

- ``CAST(%(x)s AS NUMERIC)``: a credit parameter is a number on both databases (SQLite would
  otherwise compare it as text).
- ``ROUND(…, 6)``: credit arithmetic at the columns' 6 places — nothing on PostgreSQL's NUMERIC,
  exactness on SQLite's REAL.
- ``ROUND(limit - used - held, 6) >= need``: the limit is read inside the UPDATE, from the row
  itself or a subquery, so it is never a stale value from Python.
"""

# Statements are assembled at import time from the constants below, never from input; every
# value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import re
from decimal import Decimal

from django.db import connection

from apps.usage.credits import CREDIT_QUANTUM
from apps.usage.exceptions import Limit

AMOUNT, NEED, CHARGE = (f"CAST(%({name})s AS NUMERIC)" for name in ("amount", "need", "charge"))


def room(limit: str, used: str = "used", held: str = "held") -> str:
    """The budget condition: no limit, or room for ``need`` under it."""
    return f"({limit} IS NULL OR ROUND({limit} - {used} - {held}, 6) >= {NEED})"


KEY_MONTHLY_LIMIT = "(SELECT monthly_limit FROM keys_apikey WHERE id = %(key)s)"
MEMBER_MONTHLY_LIMIT = (
    "(SELECT monthly_limit FROM usage_memberlimit"
    " WHERE grant_id = %(grant)s AND user_id = %(user)s)"
)

# Holding: add ``amount`` to ``held`` where ``need`` fits. In lock order.
HOLD_KEY_TOTAL = f"""
UPDATE keys_apikey SET credits_held = ROUND(credits_held + {AMOUNT}, 6)
WHERE id = %(key)s AND grant_id = %(grant)s
  AND {room("total_limit", "credits_used", "credits_held")}"""
HOLD_KEY_MONTHLY = f"""
UPDATE usage_keymonthcounter SET held = ROUND(held + {AMOUNT}, 6)
WHERE api_key_id = %(key)s AND period = %(period)s AND {room(KEY_MONTHLY_LIMIT)}"""
HOLD_MEMBER_MONTHLY = f"""
UPDATE usage_membermonthcounter SET held = ROUND(held + {AMOUNT}, 6)
WHERE grant_id = %(grant)s AND user_id = %(user)s AND period = %(period)s
  AND {room(MEMBER_MONTHLY_LIMIT)}"""
HOLD_GRANT = f"""
UPDATE grants_grant SET credits_held = ROUND(credits_held + {AMOUNT}, 6)
WHERE id = %(grant)s AND ROUND(credits_allocated - credits_used - credits_held, 6) >= {NEED}"""

# Settling: ``held -= amount``, ``used += charge``. In lock order.
_MOVE = f"held = ROUND(held - {AMOUNT}, 6), used = ROUND(used + {CHARGE}, 6)"
_MOVE_LIFETIME = (
    f"credits_held = ROUND(credits_held - {AMOUNT}, 6),"
    f" credits_used = ROUND(credits_used + {CHARGE}, 6)"
)
# Each returns what the credit headers need of its row — (limit, used, held) — so the status
# after a settlement comes from the settlement's own transaction.
RELEASE_KEY_TOTAL = (
    f"UPDATE keys_apikey SET {_MOVE_LIFETIME} WHERE id = %(key)s"
    " RETURNING total_limit, credits_used, credits_held, monthly_limit"
)
RELEASE_KEY_MONTHLY = (
    f"UPDATE usage_keymonthcounter SET {_MOVE} WHERE api_key_id = %(key)s AND period = %(period)s"
    " RETURNING used, held"
)
RELEASE_MEMBER_MONTHLY = f"""
UPDATE usage_membermonthcounter SET {_MOVE}
WHERE grant_id = %(grant)s AND user_id = %(user)s AND period = %(period)s
RETURNING {MEMBER_MONTHLY_LIMIT}, used, held"""
RELEASE_GRANT = (
    f"UPDATE grants_grant SET {_MOVE_LIFETIME} WHERE id = %(grant)s"
    " RETURNING credits_allocated, credits_used, credits_held"
)

# Rows the ORM would write, written out for the async path (which has no Django connection).
KEY_MONTH_COUNTER_INSERT = """
INSERT INTO usage_keymonthcounter (api_key_id, period, used, held)
VALUES (%(key)s, %(period)s, 0, 0) ON CONFLICT DO NOTHING"""
MEMBER_MONTH_COUNTER_INSERT = """
INSERT INTO usage_membermonthcounter (grant_id, user_id, period, used, held)
VALUES (%(grant)s, %(user)s, %(period)s, 0, 0) ON CONFLICT DO NOTHING"""
HOLD_INSERT_COLUMNS = (
    "api_key_id", "user_id", "grant_id", "model_id", "period", "amount", "prompt_tokens",
    "max_completion_tokens", "prompt_price", "completion_price", "created", "expires_at",
)  # fmt: skip
LEDGER_INSERT_COLUMNS = (
    "created", "api_key_id", "user_id", "grant_id", "model_id", "period", "prompt_tokens",
    "completion_tokens", "credits", "outcome", "latency_ms", "estimated", "capped",
)  # fmt: skip


def insert(table: str, columns: tuple[str, ...]) -> str:
    values = ", ".join(f"%({column})s" for column in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) RETURNING id"


HOLD_INSERT = insert("usage_hold", HOLD_INSERT_COLUMNS)
LEDGER_INSERT = insert("usage_ledgerentry", LEDGER_INSERT_COLUMNS)

# Claiming a hold: delete it and read it back in one statement; no row when already claimed.
HOLD_COLUMNS = (
    "id", "api_key_id", "user_id", "grant_id", "model_id", "period", "amount",
    "prompt_price", "completion_price", "created",
)  # fmt: skip
CLAIM = f"DELETE FROM usage_hold WHERE id = %(hold)s RETURNING {', '.join(HOLD_COLUMNS)}"
CLAIM_EXPIRED = (
    "DELETE FROM usage_hold WHERE id = %(hold)s AND expires_at <= %(now)s"
    f" RETURNING {', '.join(HOLD_COLUMNS)}"
)

# The four budgets of a key and its member in a period: (limit, used, held) of each, in the
# order of ``Limit``. A month without a counter row yet has nothing used or held.
STATUS = """
SELECT g.credits_allocated, g.credits_used, g.credits_held,
       k.total_limit, k.credits_used, k.credits_held,
       k.monthly_limit, COALESCE(km.used, 0), COALESCE(km.held, 0),
       ml.monthly_limit, COALESCE(mm.used, 0), COALESCE(mm.held, 0)
FROM keys_apikey k
JOIN grants_grant g ON g.id = k.grant_id
LEFT JOIN usage_keymonthcounter km ON km.api_key_id = k.id AND km.period = %(period)s
LEFT JOIN usage_memberlimit ml ON ml.grant_id = g.id AND ml.user_id = %(user)s
LEFT JOIN usage_membermonthcounter mm
       ON mm.grant_id = g.id AND mm.user_id = %(user)s AND mm.period = %(period)s
WHERE k.id = %(key)s AND k.grant_id = %(grant)s"""


# PostgreSQL: a whole hold or settlement in one statement. Each function runs the statements
# above in the order of ``apps.usage.steps`` (``reserve``; ``settle`` with ``close``), as
# ``_plpgsql`` turns them into PL/pgSQL: the parameter ``%(name)s`` is the variable ``_name``
# (no column starts with "_"). The functions are temporary, created on every connection of the
# gateway's pool (``apps.usage.hot``), so they always are these texts. A call is one
# statement, hence one transaction; a refusal raises REFUSED, which rolls all of it back, as
# ``steps.Atomic`` does (and is logged by the server as an ERROR, like any failed statement).
REFUSED = "AV429"  # a budget has no room; the detail is its Limit
NOT_FOUND = "AV404"  # the key does not belong to the grant
NOT_FOUND_MESSAGE = "This API key does not belong to this grant."


def _plpgsql(statement: str, **names: str) -> str:
    """``statement`` inside a function: ``%(name)s`` becomes ``names[name]`` or ``_name``."""
    return re.sub(r"%\((\w+)\)s", lambda match: names.get(match[1], f"_{match[1]}"), statement)


def _raise(state: str, message: str, detail: str = "") -> str:
    message, detail = (text.replace("'", "''") for text in (message, detail))
    return f"RAISE EXCEPTION USING ERRCODE = '{state}', MESSAGE = '{message}', DETAIL = '{detail}'"


def _refuse(limit: Limit) -> str:
    return _raise(REFUSED, f"Anvil credit hold refused by the {limit} budget", limit)


def _call(function: str, arguments: str) -> str:
    """The statement that calls ``function`` with ``%(name)s`` for each ``_name`` argument."""
    names = [argument.split()[0].removeprefix("_") for argument in arguments.split(",")]
    return f"SELECT * FROM pg_temp.{function}({', '.join(f'%({name})s' for name in names)})"


def _hold_month_counter(update: str, insert: str, limit: Limit, returning: str) -> str:
    """``steps._hold_month_counter``: insert the month's row when the first UPDATE misses."""
    update = f"{_plpgsql(update)} {returning}"
    return f"""
  {update};
  IF NOT FOUND THEN
    {_plpgsql(insert)};
    {update};
    IF NOT FOUND THEN {_refuse(limit)}; END IF;
  END IF;"""


_RESERVE_ARGUMENTS = (
    "_key bigint, _grant bigint, _user bigint, _period text, _amount numeric, _need numeric,"
    " _model_id bigint, _prompt_tokens integer, _max_completion_tokens integer,"
    " _prompt_price numeric, _completion_price numeric, _created timestamptz,"
    " _expires_at timestamptz"
)
# (limit, used, held) of the four budgets in Limit's order: STATUS's columns.
_BUDGETS = (
    "_grant_limit, _grant_used, _grant_held, _key_limit, _key_used, _key_held,"
    " _key_month_limit, _key_month_used, _key_month_held,"
    " _member_limit, _member_used, _member_held"
)
_BUDGETS_OUT = ", ".join(f"OUT {name.strip()} numeric" for name in _BUDGETS.split(","))

# steps.reserve: the four budgets in lock order, the hold row, the grant last. Returns the
# hold's id and the four budgets right after it, from the rows the UPDATEs changed (so a
# successful answer's credit headers need no settlement first: ``steps.settled_status``).
_RESERVE = f"""
CREATE FUNCTION pg_temp.anvil_hold_reserve({_RESERVE_ARGUMENTS}, OUT _id bigint, {_BUDGETS_OUT})
LANGUAGE plpgsql AS $$
BEGIN
  -- commit mode
  {_plpgsql(HOLD_KEY_TOTAL)}
    RETURNING total_limit, credits_used, credits_held, monthly_limit
    INTO _key_limit, _key_used, _key_held, _key_month_limit;
  IF NOT FOUND THEN {_refuse(Limit.KEY_TOTAL)}; END IF;
  {
    _hold_month_counter(
        HOLD_KEY_MONTHLY,
        KEY_MONTH_COUNTER_INSERT,
        Limit.KEY_MONTHLY,
        "RETURNING used, held INTO _key_month_used, _key_month_held",
    )
}
  {
    _hold_month_counter(
        HOLD_MEMBER_MONTHLY,
        MEMBER_MONTH_COUNTER_INSERT,
        Limit.MEMBER_MONTHLY,
        f"RETURNING {_plpgsql(MEMBER_MONTHLY_LIMIT)}, used, held"
        " INTO _member_limit, _member_used, _member_held",
    )
}
  {_plpgsql(HOLD_INSERT, api_key_id="_key", grant_id="_grant", user_id="_user")} INTO _id;
  {_plpgsql(HOLD_GRANT)}
    RETURNING credits_allocated, credits_used, credits_held
    INTO _grant_limit, _grant_used, _grant_held;
  IF NOT FOUND THEN {_refuse(Limit.GRANT)}; END IF;
END $$"""
RESERVE_CALL = _call("anvil_hold_reserve", _RESERVE_ARGUMENTS)
_SETTLE_ARGUMENTS = (
    "_hold bigint, _report_key bigint, _report_grant bigint, _report_user bigint,"
    " _report_period text, _created timestamptz, _prompt_tokens integer,"
    " _completion_tokens integer, _outcome text, _latency_ms integer, _estimated boolean,"
    " _max_charge numeric"
)
# What the settlement returns: the ledger row (NULL when the hold was already claimed), the
# names of the RELEASE_* statements that found no row, and the budgets after.
_SETTLED = (
    "_entry bigint, _api_key_id bigint, _user_id bigint, _grant_id bigint, _model_id bigint,"
    " _period text, _credits numeric, _capped boolean, _missing text[], "
    + ", ".join(f"{name.strip()} numeric" for name in _BUDGETS.split(","))
)
_OF_HOLD = {"key": "_api_key_id", "grant": "_grant_id", "user": "_user_id", "charge": "_credits"}
_OF_REPORT = {name: f"_report_{name}" for name in ("key", "grant", "user", "period")}


# The release of each budget; ``_missing`` names those whose counter row was missing.
RELEASES = {
    Limit.GRANT: RELEASE_GRANT, Limit.KEY_TOTAL: RELEASE_KEY_TOTAL,
    Limit.KEY_MONTHLY: RELEASE_KEY_MONTHLY, Limit.MEMBER_MONTHLY: RELEASE_MEMBER_MONTHLY,
}  # fmt: skip


def _release(limit: Limit, into: str) -> str:
    """``steps._release``: a missing row is named in ``_missing``, not fatal."""
    return f"""
  {_plpgsql(RELEASES[limit], **_OF_HOLD)} INTO {into};
  IF NOT FOUND THEN _missing := _missing || '{limit}'::text; END IF;"""


def _status(names: dict) -> str:
    return f"""{_plpgsql(STATUS, **names)} INTO {_BUDGETS};
    IF NOT FOUND THEN {_raise(NOT_FOUND, NOT_FOUND_MESSAGE)}; END IF;"""


# steps.settle: claim the hold (or, already claimed, read the budgets to report), charge the
# cost at most the hold (credits.credits_for's rule: rounded once, half-up, to 6 places) and
# at most _max_charge when given (a request served from a hold larger than its own would be:
# apps.gateway.ready), the four counters and the ledger row in lock order, the budgets from
# the RETURNING rows.
_SETTLE_OUT = "OUT " + _SETTLED.replace(", _", ", OUT _")
_SETTLE = f"""
CREATE FUNCTION pg_temp.anvil_hold_settle({_SETTLE_ARGUMENTS}, {_SETTLE_OUT})
LANGUAGE plpgsql AS $$
DECLARE
  _id bigint; _amount numeric; _prompt_price numeric; _completion_price numeric;
  _hold_created timestamptz; _cost numeric;
BEGIN
  {_plpgsql(CLAIM)} INTO _id, _api_key_id, _user_id, _grant_id, _model_id, _period, _amount,
    _prompt_price, _completion_price, _hold_created;
  IF NOT FOUND THEN
    {_status(_OF_REPORT)}
    RETURN;
  END IF;
  _cost := ROUND(
    (_prompt_tokens * _prompt_price + _completion_tokens * _completion_price) * 0.000001, 6);
  _credits := LEAST(_cost, _amount, _max_charge);  -- (LEAST skips a NULL _max_charge)
  _capped := _cost > _credits;
  {_release(Limit.KEY_TOTAL, "_key_limit, _key_used, _key_held, _key_month_limit")}
  {_release(Limit.KEY_MONTHLY, "_key_month_used, _key_month_held")}
  _key_month_used := COALESCE(_key_month_used, 0);
  _key_month_held := COALESCE(_key_month_held, 0);
  {_release(Limit.MEMBER_MONTHLY, "_member_limit, _member_used, _member_held")}
  {_plpgsql(LEDGER_INSERT)} INTO _entry;
  {_release(Limit.GRANT, "_grant_limit, _grant_used, _grant_held")}
  IF _missing && ARRAY['{Limit.KEY_TOTAL}', '{Limit.MEMBER_MONTHLY}', '{Limit.GRANT}'] THEN
    {_status(_OF_HOLD)}
  END IF;
END $$"""
SETTLE_CALL = _call("anvil_hold_settle", _SETTLE_ARGUMENTS)
FUNCTIONS = f"{_RESERVE};\n{_SETTLE}"
# A hold committed without waiting for its WAL flush (about 0.2 ms less per request here).
# What a server crash can lose of it is only the hold itself, with its held amounts (one
# transaction): the request's settlement then finds no hold, writes no row and charges
# nothing. The settlement, which writes the ledger, always waits for the flush, and makes every
# earlier commit durable with its own.
_ASYNC_COMMIT = "PERFORM set_config('synchronous_commit', 'off', true);"


def functions(*, durable_holds: bool) -> str:
    """``FUNCTIONS``, the hold's commit waiting for its WAL flush or not
    (settings.GATEWAY_DURABLE_HOLDS)."""
    if durable_holds:
        return FUNCTIONS
    reserve = _RESERVE.replace("-- commit mode", _ASYNC_COMMIT)
    return f"{reserve};\n{_SETTLE}"


def execute(statement: str, params: dict) -> int:
    """Run one statement; the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def fetch_one(statement: str, params: dict) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()


def credits(value) -> Decimal | None:
    """A credit column's value as a Decimal: PostgreSQL returns one, SQLite a float or int."""
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(str(value)).quantize(CREDIT_QUANTUM)
