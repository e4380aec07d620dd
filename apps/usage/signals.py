"""Signals of the ledger, for the layers above it (after apps/grants/signals.py)."""

from __future__ import annotations

from django.dispatch import Signal

# A ledger row was written marked ``capped``: the request's real cost exceeded its hold, so it
# was charged the hold (a billing leak to look into). Sent with ``hold`` and ``entry``, in the
# process that wrote the row, right after it was written; the gateway's metrics count it.
ledger_row_capped = Signal()
