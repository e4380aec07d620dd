"""The sweeper (``services.holds_sweep``): a hold that expired is withdrawn, as if it had never
been placed. By design it leaves no ledger row (the old sweeper wrote an ``expired`` row of 0
credits)."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.grants.models import Grant
from apps.usage import ledger, services
from apps.usage.models import Hold, LedgerEntry, Outcome
from apps.usage.reconcile import counters_reconcile
from apps.usage.services import holds_sweep
from apps.usage.tests.conftest import place, plan_for, settle

pytestmark = pytest.mark.django_db

LATER = dt.timedelta(seconds=61)


def grant_counters(world) -> tuple[Decimal, Decimal]:
    grant = Grant.objects.get(pk=world.grant.pk)
    return grant.credits_used, grant.credits_held


def test_it_withdraws_expired_holds_leaving_no_row(world, key, caplog):
    hold = place(key, world, ttl_seconds=60)
    with caplog.at_level(logging.WARNING, logger="apps.usage.services"):
        assert holds_sweep(now=timezone.now() + LATER) == 1
    assert not Hold.objects.filter(pk=hold.pk).exists()
    assert grant_counters(world) == (0, 0)
    assert not LedgerEntry.objects.exists()
    assert counters_reconcile() == []
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"Withdrew expired credit hold {hold.pk} (key {key.pk}, member {key.owner_id}, "
        f"grant {key.grant_id})."
    )


def test_it_leaves_live_holds_alone(world, key):
    place(key, world, ttl_seconds=60)
    assert holds_sweep(now=timezone.now() + dt.timedelta(seconds=30)) == 0
    assert Hold.objects.count() == 1
    assert grant_counters(world) == (0, Decimal("0.002"))


def test_it_withdraws_each_hold_once_when_run_twice(world, key):
    place(key, world, ttl_seconds=60), place(key, world, ttl_seconds=60)
    now = timezone.now() + LATER
    assert holds_sweep(now=now) == 2
    assert holds_sweep(now=now) == 0
    assert not LedgerEntry.objects.exists()
    assert grant_counters(world) == (0, 0)


def test_it_reads_the_holds_in_batches(world, key, monkeypatch):
    monkeypatch.setattr(services, "SWEEP_BATCH", 2)
    for _ in range(5):
        place(key, world, ttl_seconds=60)
    live = place(key, world, ttl_seconds=600)
    assert holds_sweep(now=timezone.now() + LATER) == 5
    assert list(Hold.objects.values_list("pk", flat=True)) == [live.pk]
    assert grant_counters(world) == (0, live.amount)


def test_it_makes_a_late_settle_a_no_op(world, key):
    hold = place(key, world, ttl_seconds=60)
    holds_sweep(now=timezone.now() + LATER)
    assert settle(hold, completion_tokens=10, latency_ms=70_000) is None
    assert not LedgerEntry.objects.exists()
    assert grant_counters(world) == (0, 0)


def test_it_finds_nothing_to_sweep_after_a_settle(world, key):
    hold = place(key, world, ttl_seconds=60)
    settle(hold, completion_tokens=10, latency_ms=100)
    assert holds_sweep(now=timezone.now() + LATER) == 0
    assert LedgerEntry.objects.get().outcome == Outcome.OK


@pytest.mark.django_db(transaction=True)
def test_a_late_settle_either_way_finds_the_swept_hold_gone(world, key, way):
    hold = way.place(plan_for(key, world, ttl_seconds=60))
    assert holds_sweep(now=timezone.now() + LATER) == 1
    assert way.settle(hold, ledger.Usage(1000, 10)) is None
    assert way.withdraw(hold) is False
    assert not LedgerEntry.objects.exists()
    assert grant_counters(world) == (0, 0)
    assert counters_reconcile() == []
