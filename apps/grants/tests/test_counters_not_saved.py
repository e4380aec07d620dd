"""Saving a grant or a key read before requests settled keeps what they settled: a save
writes the allocation and limits, never the ledger's counters (the soak found the grant admin
writing back the counters it had read, so the counters no longer equalled the ledger)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.usage import ledger
from apps.usage.reconcile import counters_reconcile
from apps.usage.tests.conftest import make_key

pytestmark = pytest.mark.django_db


def spend(key, world) -> None:
    plan = ledger.Plan(
        api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id, model=world.chat_model,
        prompt_tokens=1000, max_completion_tokens=1000,
    )  # fmt: skip
    ledger.settle(ledger.place(plan), ledger.Usage(1000, 1000))
    ledger.place(plan)  # and one still held


def test_a_grant_saved_from_an_old_read_keeps_the_settled_counters(world):
    grant = Grant.objects.get(pk=world.grant.pk)  # as an admin form reads it
    spend(make_key(world), world)
    grant.credits_allocated = Decimal("500")
    grant.save()
    grant.refresh_from_db()
    assert (grant.credits_allocated, grant.credits_used, grant.credits_held) == (
        Decimal("500"), Decimal("0.002"), Decimal("0.002"),
    )  # fmt: skip
    assert counters_reconcile() == []


def test_a_key_saved_from_an_old_read_keeps_the_settled_counters(world):
    key = make_key(world)
    stale = ApiKey.objects.get(pk=key.pk)
    spend(key, world)
    stale.monthly_limit = Decimal("7")
    stale.save(update_fields=["monthly_limit", "credits_used"])
    stale.refresh_from_db()
    assert (stale.monthly_limit, stale.credits_used, stale.credits_held) == (
        Decimal("7"), Decimal("0.002"), Decimal("0.002"),
    )  # fmt: skip
    assert counters_reconcile() == []
