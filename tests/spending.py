"""Spending for tests that read it back: ledger rows written directly (reports, pages) and
requests held and settled at a chosen moment (statements, notifications)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from unittest import mock

from django.conf import settings
from django.utils import timezone

from apps.keys.models import ApiKey
from apps.usage import ledger
from apps.usage.models import Hold, LedgerEntry
from apps.usage.periods import period_for


def local(*args: int) -> dt.datetime:
    """An aware datetime in the service's time zone: local(2026, 10, 31, 23, 59, 59)."""
    return dt.datetime(*args, tzinfo=zoneinfo.ZoneInfo(settings.TIME_ZONE))


def hold_at(moment: dt.datetime, *, key, model, prompt_tokens=1000, completion_tokens=1000):
    with mock.patch("django.utils.timezone.now", return_value=moment):
        return ledger.place(
            ledger.Plan(
                api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id, model=model,
                prompt_tokens=prompt_tokens, max_completion_tokens=completion_tokens,
            )
        )  # fmt: skip


def settle(hold: Hold, *, prompt_tokens=1000, completion_tokens=1000) -> LedgerEntry:
    return ledger.settle(hold, ledger.Usage(prompt_tokens, completion_tokens, latency_ms=5))


def spend_at(moment: dt.datetime, *, key, model, **tokens) -> LedgerEntry:
    """One request whose hold was placed at ``moment`` (so it counts in that month), settled
    at once; its ledger row is stamped ``moment`` too."""
    entry = settle(hold_at(moment, key=key, model=model, **tokens), **tokens)
    LedgerEntry.objects.filter(pk=entry.pk).update(created=moment)
    return entry


def make_key(world, *, owner, name: str):
    """An API key without going through the secret machinery (irrelevant to reports)."""
    return ApiKey.objects.create(
        grant=world.grant,
        owner=owner,
        name=name,
        lookup_prefix=f"rep{name[:13]}",
        digest="x" * 64,
        expires_at=timezone.now() + dt.timedelta(days=30),
    )


def spend(world, *, key, credits, when=None, model=None, prompt_tokens=10, completion_tokens=5):
    """One settled request in the ledger (the reports read it as the unrolled tail)."""
    when = when or timezone.now()
    return LedgerEntry.objects.create(
        created=when,
        api_key=key,
        user=key.owner,
        grant=key.grant,
        model=model or world.chat_model,
        period=period_for(when),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        credits=credits,
        outcome="ok",
        latency_ms=10,
    )
