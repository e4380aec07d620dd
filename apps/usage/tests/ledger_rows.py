"""Ledger rows written straight into the ledger, at chosen moments: reports and the rollup only
read them, so they need no holds or counters."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

from django.db.models import Count, Sum

from apps.usage.models import LedgerEntry, Outcome
from apps.usage.periods import period_for

WARSAW = zoneinfo.ZoneInfo("Europe/Warsaw")


def warsaw(*args) -> dt.datetime:
    """An aware moment on the Warsaw wall clock: warsaw(2026, 10, 31, 23, 59, 59)."""
    return dt.datetime(*args, tzinfo=WARSAW)


def ledger_row(key, *, model, created, credits="0.25", user=None, **fields) -> LedgerEntry:
    """A settled request of ``key`` (by its owner unless ``user`` says otherwise)."""
    return LedgerEntry.objects.create(
        api_key=key,
        user=user or key.owner,
        grant_id=key.grant_id,
        model=model,
        period=fields.pop("period", None) or period_for(created),
        prompt_tokens=fields.pop("prompt_tokens", 100),
        completion_tokens=fields.pop("completion_tokens", 50),
        credits=Decimal(credits),
        outcome=fields.pop("outcome", Outcome.OK),
        latency_ms=fields.pop("latency_ms", 10),
        created=created,
        **fields,
    )


def ledger_sums(**where) -> dict:
    """The raw ledger's sums over the rows matching ``where``: what every report must equal."""
    sums = LedgerEntry.objects.filter(**where).aggregate(
        credits=Sum("credits"),
        requests=Count("id"),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
    )
    return {
        "credits": sums["credits"] or Decimal(0),
        "requests": sums["requests"],
        "prompt_tokens": sums["prompt_tokens"] or 0,
        "completion_tokens": sums["completion_tokens"] or 0,
    }
