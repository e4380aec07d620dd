"""Writes of the accounting beyond the ledger's own three operations (``apps.usage.ledger``:
place, settle, withdraw): the sweep of holds whose request will never end them."""

from __future__ import annotations

import datetime as dt
import logging

from django.utils import timezone

from apps.usage import ledger
from apps.usage.models import Hold

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500


def holds_sweep(*, now: dt.datetime | None = None) -> int:
    """Withdraw every hold that expired by ``now`` (``ledger.withdraw(hold, expired_by=now)``:
    a crashed process's, or one whose settlement failed), as if it had never been placed: no
    ledger row, nothing charged. Returns how many it withdrew. Each withdrawal claims its hold
    by a conditional delete, so concurrent sweepers, late settles and withdrawals never end one
    hold twice; run again, it finds nothing. Reads the holds in batches of SWEEP_BATCH."""
    now = now or timezone.now()
    withdrawn, after = 0, 0
    while True:
        batch = list(
            Hold.objects.filter(expires_at__lte=now, pk__gt=after).order_by("pk")[:SWEEP_BATCH]
        )
        for hold in batch:
            if ledger.withdraw(hold, expired_by=now):
                withdrawn += 1
                logger.warning(
                    "Withdrew expired credit hold %s (key %s, member %s, grant %s).",
                    hold.pk, hold.api_key_id, hold.user_id, hold.grant_id,
                )  # fmt: skip
        if len(batch) < SWEEP_BATCH:
            return withdrawn
        after = batch[-1].pk
