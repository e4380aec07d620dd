"""The statements of the hot path, written out once.

Every request runs a hold, a settlement and a status read — about a dozen statements. Compiling
them through the ORM costs far more CPU than running them (``resolve_expression`` and
``compile`` of conditional expressions take most of the time), and the gateway may add at most
2 ms to a request, so they are plain SQL here, in the dialect PostgreSQL and SQLite share.
The rules behind them are in ``apps.usage.services``; the tests run every one of them.

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

from decimal import Decimal

from django.db import connection

from apps.usage.credits import CREDIT_QUANTUM

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
