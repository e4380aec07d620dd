"""Spending at a chosen moment, for statement and notification tests."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from unittest import mock

from django.conf import settings

from apps.usage.models import Hold, LedgerEntry, Outcome
from apps.usage.services import hold_place, hold_settle


def local(*args: int) -> dt.datetime:
    """An aware datetime in the service's time zone: local(2026, 10, 31, 23, 59, 59)."""
    return dt.datetime(*args, tzinfo=zoneinfo.ZoneInfo(settings.TIME_ZONE))


def hold_at(moment: dt.datetime, *, key, model, prompt_tokens=1000, completion_tokens=1000):
    with mock.patch("django.utils.timezone.now", return_value=moment):
        return hold_place(
            api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id,
            catalog_model_id=model.pk, prompt_tokens=prompt_tokens,
            max_completion_tokens=completion_tokens,
        )  # fmt: skip


def settle(hold: Hold, *, prompt_tokens=1000, completion_tokens=1000) -> LedgerEntry:
    return hold_settle(
        hold_id=hold.pk, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        outcome=Outcome.OK, latency_ms=5, estimated=False,
    )  # fmt: skip


def spend_at(moment: dt.datetime, *, key, model, **tokens) -> LedgerEntry:
    """One request whose hold was placed at ``moment`` (so it counts in that month), settled
    at once; its ledger row is stamped ``moment`` too."""
    entry = settle(hold_at(moment, key=key, model=model, **tokens), **tokens)
    LedgerEntry.objects.filter(pk=entry.pk).update(created=moment)
    return entry
