"""Check, and on request mend, every credit counter against the ledger.

A counter's ``used`` must equal the sum of its ledger rows' credits and its ``held`` the sum of
its live holds. ``counters_reconcile`` recomputes both for the four kinds of counter and lists
every difference; with ``repair=True`` it rewrites the counters from the ledger.

A plain check reads one consistent snapshot (REPEATABLE READ on PostgreSQL) and blocks nobody.
A repair locks the counters in the services' lock order — API keys, key month counters, member
month counters, grants — so requests wait rather than change a counter between its sum and its
rewrite; every transaction still in flight applies its change on top of the repaired value.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Sum

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter

ZERO = Decimal(0)


@dataclass(frozen=True)
class Mismatch:
    counter: str  # "grant", "key_total", "key_monthly", "member_monthly"
    owner: tuple  # (grant_id,), (api_key_id,), (api_key_id, period), (grant_id, user_id, period)
    field: str  # "used" or "held"
    recorded: Decimal
    expected: Decimal


@dataclass(frozen=True)
class _Kind:
    counter: str
    model: type
    owner: tuple[str, ...]  # the counter's fields that name its owner
    sources: tuple[str, ...]  # the same owner in ledger and hold rows
    used: str
    held: str
    grant_path: str


LIFETIME = {"used": "credits_used", "held": "credits_held"}
MONTHLY = {"used": "used", "held": "held"}
KINDS = (  # in lock order
    _Kind("key_total", ApiKey, ("id",), ("api_key_id",), **LIFETIME, grant_path="grant_id"),
    _Kind(
        "key_monthly",
        KeyMonthCounter,
        owner=("api_key_id", "period"),
        sources=("api_key_id", "period"),
        **MONTHLY,
        grant_path="api_key__grant_id",
    ),
    _Kind(
        "member_monthly",
        MemberMonthCounter,
        owner=("grant_id", "user_id", "period"),
        sources=("grant_id", "user_id", "period"),
        **MONTHLY,
        grant_path="grant_id",
    ),
    _Kind("grant", Grant, ("id",), ("grant_id",), **LIFETIME, grant_path="id"),
)


def _sums(model, kind: _Kind, field: str, grant_id: int | None) -> dict[tuple, Decimal]:
    rows = model.objects.all() if grant_id is None else model.objects.filter(grant_id=grant_id)
    rows = rows.order_by().values(*kind.sources).annotate(total=Sum(field))
    return {tuple(row[name] for name in kind.sources): row["total"] for row in rows}


def _counters(kind: _Kind, grant_id: int | None, *, lock: bool):
    rows = kind.model.objects.all()
    if grant_id is not None:
        rows = rows.filter(**{kind.grant_path: grant_id})
    if lock:
        rows = rows.select_for_update().order_by("pk")
    return {
        tuple(row[name] for name in kind.owner): (row["pk"], row[kind.used], row[kind.held])
        for row in rows.values("pk", *kind.owner, kind.used, kind.held)
    }


def _compare(kind: _Kind, counters: dict, grant_id: int | None) -> list[Mismatch]:
    used = _sums(LedgerEntry, kind, "credits", grant_id)
    held = _sums(Hold, kind, "amount", grant_id)
    found = []
    for owner in sorted(set(counters) | set(used) | set(held), key=str):
        _pk, recorded_used, recorded_held = counters.get(owner, (None, ZERO, ZERO))
        pairs = (("used", recorded_used, used), ("held", recorded_held, held))
        for field, recorded, expected in pairs:
            if recorded != expected.get(owner, ZERO):
                found.append(
                    Mismatch(kind.counter, owner, field, recorded, expected.get(owner, ZERO))
                )
    return found


def _repair(kind: _Kind, counters: dict, mismatches: list[Mismatch]) -> None:
    for owner in {m.owner for m in mismatches if m.counter == kind.counter}:
        right = {
            m.field: m.expected
            for m in mismatches
            if m.counter == kind.counter and m.owner == owner
        }
        values = {getattr(kind, field): value for field, value in right.items()}
        if owner in counters:
            kind.model.objects.filter(pk=counters[owner][0]).update(**values)
        else:  # a month counter row that should exist
            kind.model.objects.create(**dict(zip(kind.owner, owner, strict=True)), **values)


def counters_reconcile(*, grant_id: int | None = None, repair: bool = False) -> list[Mismatch]:
    """Every counter (of one grant, or all) whose used/held differ from the ledger and the live
    holds. With ``repair=True`` the counters are rewritten; the differences found are returned."""
    snapshot = not (repair or connection.in_atomic_block) and connection.vendor == "postgresql"
    with transaction.atomic():
        if snapshot:  # inside a caller's transaction, its isolation level applies
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        counters = {kind: _counters(kind, grant_id, lock=repair) for kind in KINDS}
        mismatches = [m for kind in KINDS for m in _compare(kind, counters[kind], grant_id)]
        if repair:
            for kind in KINDS:
                _repair(kind, counters[kind], mismatches)
    return mismatches
