from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.grants.models import Grant
from apps.usage.models import Hold, LedgerEntry, Outcome
from apps.usage.reconcile import counters_reconcile
from apps.usage.services import hold_settle, holds_sweep
from apps.usage.tests.conftest import place

pytestmark = pytest.mark.django_db

LATER = dt.timedelta(seconds=61)


def grant_counters(world) -> tuple[Decimal, Decimal]:
    grant = Grant.objects.get(pk=world.grant.pk)
    return grant.credits_used, grant.credits_held


def test_it_releases_expired_holds_without_charging(world, key):
    hold = place(key, world, ttl_seconds=60)
    assert holds_sweep(now=timezone.now() + LATER) == 1
    assert not Hold.objects.filter(pk=hold.pk).exists()
    assert grant_counters(world) == (0, 0)
    entry = LedgerEntry.objects.get()
    assert (entry.outcome, entry.credits, entry.completion_tokens) == (Outcome.EXPIRED, 0, 0)
    assert entry.latency_ms >= 60_000
    assert counters_reconcile() == []


def test_it_leaves_live_holds_alone(world, key):
    place(key, world, ttl_seconds=60)
    assert holds_sweep(now=timezone.now() + dt.timedelta(seconds=30)) == 0
    assert Hold.objects.count() == 1
    assert grant_counters(world) == (0, Decimal("0.002"))


def test_it_releases_each_hold_once_when_run_twice(world, key):
    place(key, world, ttl_seconds=60), place(key, world, ttl_seconds=60)
    now = timezone.now() + LATER
    assert holds_sweep(now=now) == 2
    assert holds_sweep(now=now) == 0
    assert LedgerEntry.objects.count() == 2
    assert grant_counters(world) == (0, 0)


def test_it_makes_a_late_settle_a_no_op(world, key):
    hold = place(key, world, ttl_seconds=60)
    holds_sweep(now=timezone.now() + LATER)
    settled = hold_settle(
        hold_id=hold.pk, prompt_tokens=1000, completion_tokens=10, outcome=Outcome.OK,
        latency_ms=70_000, estimated=False,
    )  # fmt: skip
    assert settled is None
    assert LedgerEntry.objects.get().outcome == Outcome.EXPIRED
    assert grant_counters(world) == (0, 0)


def test_it_finds_nothing_to_sweep_after_a_settle(world, key):
    hold = place(key, world, ttl_seconds=60)
    hold_settle(
        hold_id=hold.pk, prompt_tokens=1000, completion_tokens=10, outcome=Outcome.OK,
        latency_ms=100, estimated=False,
    )  # fmt: skip
    assert holds_sweep(now=timezone.now() + LATER) == 0
    assert LedgerEntry.objects.get().outcome == Outcome.OK
