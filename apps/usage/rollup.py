"""Rolling the ledger into hourly buckets, so reports never scan the ledger.

``ledger_rollup`` claims ledger rows that are not rolled up yet and adds them to their
``UsageBucket`` (per UTC hour, key, model, member and period), in one transaction per batch:

1. Claim: ``UPDATE usage_ledgerentry SET rolled_up = TRUE WHERE id = ANY(ARRAY(SELECT id …
   WHERE NOT rolled_up LIMIT n FOR UPDATE SKIP LOCKED)) RETURNING …``. A row is claimed by
   exactly one transaction: a concurrent run skips rows another one has locked, and a row whose
   claim committed meanwhile fails ``NOT rolled_up``, which the row lock re-checks on its newest
   version. The rows come back in the same statement, so what is counted is exactly what was
   claimed. ``ARRAY(…)`` runs the inner SELECT once, and the UPDATE then finds the rows by
   primary key: the plan does not depend on statistics, which are always stale for a tail that
   a minute ago did not exist (a join there can turn quadratic).
2. Add: the claimed rows are summed per bucket and added with ``INSERT … SELECT * FROM
   unnest(…) ON CONFLICT DO UPDATE SET x = bucket.x + excluded.x`` (one statement, one array per
   column), buckets in key order so two runs never deadlock.

3. Mark the keys used: each key's ``last_used`` moves to its newest claimed row and its
   ``request_count`` grows by its claimed rows (one statement, last, so the keys' rows —
   which the gateway's holds update too — stay locked only for the commit). This is how the
   portal knows when a key was last used without a write on the gateway's answer path; it is
   as fresh as the rollup's beat (a minute).

Claim, addition and marks commit together or not at all: a crash leaves the rows unclaimed and the
buckets untouched. Running it twice is running it once; a duplicated beat finds nothing left.
Rows settled after a run (even ones stamped with an hour already rolled) are simply claimed by
the next one; reports add that not-yet-rolled tail, so they are always current.

The statements are plain SQL. SQLite has no arrays and no ``SKIP LOCKED``, and needs no
``SKIP LOCKED`` (it runs one write transaction at a time): it claims with ``id IN (…) AND NOT
rolled_up`` and adds with rows of ``VALUES``.
"""

# Statements are assembled from the constants below, never from input.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.utils.dateparse import parse_datetime

from apps.usage.credits import as_credits

CLAIMED = (
    "created", "api_key_id", "user_id", "grant_id", "model_id", "period",
    "prompt_tokens", "completion_tokens", "credits", "estimated",
)  # fmt: skip
UNROLLED = "SELECT id FROM usage_ledgerentry WHERE NOT rolled_up LIMIT %(limit)s"
CLAIM = f"""
UPDATE usage_ledgerentry SET rolled_up = TRUE
WHERE id = ANY(ARRAY({UNROLLED} FOR UPDATE SKIP LOCKED))
RETURNING {", ".join(CLAIMED)}"""
CLAIM_SQLITE = f"""
UPDATE usage_ledgerentry SET rolled_up = TRUE
WHERE id IN ({UNROLLED}) AND NOT rolled_up
RETURNING {", ".join(CLAIMED)}"""

BUCKET_KEY = ("api_key_id", "hour", "model_id", "user_id", "period")
SUMS = ("requests", "prompt_tokens", "completion_tokens", "credits", "estimated_requests")
_ADD = ", ".join(
    f"{name} = ROUND(usage_usagebucket.{name} + excluded.{name}, 6)"
    if name == "credits"
    else f"{name} = usage_usagebucket.{name} + excluded.{name}"
    for name in SUMS
)
_COLUMNS = f"{', '.join(BUCKET_KEY)}, grant_id, {', '.join(SUMS)}"
_UPSERT = f"ON CONFLICT ({', '.join(BUCKET_KEY)}) DO UPDATE SET {_ADD}"
# PostgreSQL: every bucket in one statement, each column one array parameter.
_TYPES = ("bigint", "timestamptz", "bigint", "bigint", "varchar", "bigint", "integer", "bigint",
          "bigint", "numeric", "integer")  # fmt: skip
ADD = f"""
INSERT INTO usage_usagebucket ({_COLUMNS})
SELECT * FROM unnest({", ".join(f"%s::{kind}[]" for kind in _TYPES)})
{_UPSERT}"""
# SQLite: rows of values, ADD_CHUNK buckets per statement (11 parameters each, under 32766).
ADD_CHUNK = 500
_VALUES = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, CAST(%s AS NUMERIC), %s)"


def add_values_statement(count: int) -> str:
    values = ", ".join([_VALUES] * count)
    return f"INSERT INTO usage_usagebucket ({_COLUMNS}) VALUES {values} {_UPSERT}"


@dataclass
class _Sums:
    grant_id: int
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    credits: Decimal = Decimal(0)
    estimated_requests: int = 0


def _aware(moment: dt.datetime | str) -> dt.datetime:
    """A ledger row's ``created`` as an aware datetime (SQLite returns text, in UTC)."""
    if isinstance(moment, str):
        moment = parse_datetime(moment)
    if moment.tzinfo is None:  # SQLite keeps UTC without a zone
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def hour_start(moment: dt.datetime | str) -> dt.datetime:
    """The start of the UTC hour of a ledger row's ``created``."""
    return _aware(moment).astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _claim(limit: int) -> list[dict]:
    statement = CLAIM if connection.vendor == "postgresql" else CLAIM_SQLITE
    with connection.cursor() as cursor:
        cursor.execute(statement, {"limit": limit})
        return [dict(zip(CLAIMED, row, strict=True)) for row in cursor.fetchall()]


def _sum(rows: list[dict]) -> dict[tuple, _Sums]:
    buckets: dict[tuple, _Sums] = defaultdict(lambda: _Sums(grant_id=0))
    for row in rows:
        key = (row["api_key_id"], hour_start(row["created"]), row["model_id"], row["user_id"],
               row["period"])  # fmt: skip
        bucket = buckets[key]
        bucket.grant_id = row["grant_id"]
        bucket.requests += 1
        bucket.prompt_tokens += row["prompt_tokens"]
        bucket.completion_tokens += row["completion_tokens"]
        bucket.credits += as_credits(row["credits"])
        bucket.estimated_requests += bool(row["estimated"])
    return buckets


def _add(buckets: dict[tuple, _Sums]) -> None:
    """Add the sums to their buckets, creating missing ones; in key order, so concurrent runs
    lock buckets in the same order."""
    rows = [
        (key_id, hour, model_id, user_id, period, s.grant_id, s.requests, s.prompt_tokens,
         s.completion_tokens, s.credits, s.estimated_requests)
        for (key_id, hour, model_id, user_id, period), s in sorted(buckets.items())
    ]  # fmt: skip
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(ADD, [list(column) for column in zip(*rows, strict=True)])
            return
        adapt = connection.ops.adapt_datetimefield_value
        for start in range(0, len(rows), ADD_CHUNK):
            chunk = rows[start : start + ADD_CHUNK]
            values = [[*row[:1], adapt(row[1]), *row[2:9], str(row[9]), row[10]] for row in chunk]
            cursor.execute(add_values_statement(len(chunk)), [v for row in values for v in row])


MARK_KEYS = """
UPDATE keys_apikey SET last_used = GREATEST(keys_apikey.last_used, used.at),
                       request_count = keys_apikey.request_count + used.requests
FROM unnest(%s::bigint[], %s::timestamptz[], %s::bigint[]) AS used(id, at, requests)
WHERE keys_apikey.id = used.id"""
MARK_KEY_SQLITE = """
UPDATE keys_apikey SET last_used = MAX(COALESCE(last_used, %s), %s),
                       request_count = request_count + %s
WHERE id = %s"""


def _key_uses(rows: list[dict]) -> list[tuple[int, dt.datetime, int]]:
    """(key id, newest row's time, rows) per key, in key order (the lock order)."""
    uses: dict[int, tuple[dt.datetime, int]] = {}
    for row in rows:
        created = _aware(row["created"])
        newest, count = uses.get(row["api_key_id"], (created, 0))
        uses[row["api_key_id"]] = (max(newest, created), count + 1)
    return [(key_id, at, count) for key_id, (at, count) in sorted(uses.items())]


def _mark_keys(rows: list[dict]) -> None:
    uses = _key_uses(rows)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(MARK_KEYS, [list(column) for column in zip(*uses, strict=True)])
            return
        adapt = connection.ops.adapt_datetimefield_value
        for key_id, at, count in uses:
            cursor.execute(MARK_KEY_SQLITE, [adapt(at), adapt(at), count, key_id])


def _rollup_batch(limit: int) -> int:
    with transaction.atomic():
        rows = _claim(limit)
        if rows:
            _add(_sum(rows))
            _mark_keys(rows)
    return len(rows)


def ledger_rollup(*, limit: int = 10_000) -> int:
    """Roll every ledger row not rolled up yet into its bucket, ``limit`` rows per
    transaction; returns how many rows it rolled. Idempotent and safe to run concurrently."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}")
    rolled = 0
    while True:
        batch = _rollup_batch(limit)
        rolled += batch
        if batch < limit:
            return rolled
