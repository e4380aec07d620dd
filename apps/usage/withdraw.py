"""Withdrawing a hold as if it had never been placed: the hold row deleted, the four counters
back where they were, no ledger row, no charge.

For a request that turns out to be refused after its hold was placed: the gateway places the
hold of a key it accepted before while it reads the key again (``apps.gateway.admission``), and
when that read refuses the key (revoked, expired, its owner now commercial…) the request must
leave what any refused request leaves — nothing. A request that was admitted and then ended
early is settled instead (``hold_settle``: no charge, one ledger row with its outcome).

Same rules as a settlement with no charge, minus the ledger row: the hold is claimed with
``DELETE … RETURNING`` (so a settle, the sweeper and a withdrawal never release one hold
twice), then ``held -= amount`` on the counters in the lock order of ``apps.usage.services``,
all in one transaction.
"""

from __future__ import annotations

from decimal import Decimal

from asgiref.sync import sync_to_async
from django.db import transaction

from apps.usage import hot, sql, steps
from apps.usage.services import _run

# The counters a hold sits on, in lock order (ApiKey → month counters → Grant).
_RELEASES = (
    sql.RELEASE_KEY_TOTAL,
    sql.RELEASE_KEY_MONTHLY,
    sql.RELEASE_MEMBER_MONTHLY,
    sql.RELEASE_GRANT,
)


def withdraw(*, hold_id: int) -> steps.Sequence:
    """Claim the hold and give its amount back to every counter (run it in one transaction).
    True when withdrawn; False when it was already settled, swept or withdrawn."""
    hold = yield from steps.claim(hold_id=hold_id)
    if hold is None:
        return False
    for statement in _RELEASES:
        yield from steps._release(statement, hold, Decimal(0))
    return True


def _atomically(sequence: steps.Sequence) -> steps.Sequence:
    return (yield steps.Atomic(sequence))


def hold_withdraw(*, hold_id: int) -> bool:
    with transaction.atomic():
        return _run(withdraw(hold_id=hold_id))


async def ahold_withdraw(*, hold_id: int) -> bool:
    """``hold_withdraw`` for async code: on the event loop's pool on PostgreSQL, else in a
    worker thread."""
    if not hot.on_event_loop():
        return await sync_to_async(hold_withdraw, thread_sensitive=False)(hold_id=hold_id)
    return await hot._on_pool(_atomically(withdraw(hold_id=hold_id)))
