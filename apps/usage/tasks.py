"""Periodic work that keeps the books exact. Each task is thin: it calls one service, and
every one of those services is idempotent and claims its rows with a conditional statement
(a DELETE of the hold, an UPDATE of the ledger row, locked counters), so a duplicated beat or
two workers running the same task never process anything twice. The schedule is in
``portal/celery.py``."""

from __future__ import annotations

import logging

from celery import shared_task

from apps.usage.reconcile import counters_reconcile
from apps.usage.services import holds_sweep

logger = logging.getLogger(__name__)


@shared_task
def sweep_expired_holds() -> int:
    """Withdraw the credit holds of requests whose process crashed (each one logged)."""
    return holds_sweep()


@shared_task
def roll_up_ledger() -> int:
    """Add every ledger row not yet rolled up to its hourly usage bucket."""
    from apps.usage.rollup import ledger_rollup

    return ledger_rollup()


@shared_task
def reconcile_counters() -> int:
    """Compare every credit counter with the ledger and the live holds; repair differences.

    A difference means a bug or a manual edit, so each one is logged as a warning with the
    counter, its owner's ids and both values — never anything a user sent."""
    mismatches = counters_reconcile(repair=True)
    for m in mismatches:
        logger.warning(
            "Counter %s %s: %s was %s, the ledger says %s; repaired.",
            m.counter, m.owner, m.field, m.recorded, m.expected,
        )  # fmt: skip
    return len(mismatches)
