"""The periodic usage tasks: each one run twice does what one run does."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from apps.grants.models import Grant
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, UsageBucket
from apps.usage.reconcile import counters_reconcile
from apps.usage.tasks import reconcile_counters, roll_up_ledger, sweep_expired_holds
from apps.usage.tests.conftest import REQUEST_COST, place
from apps.usage.tests.conftest import spend as spend_once

pytestmark = pytest.mark.django_db


def spend(world, key, times=1):
    for _ in range(times):
        spend_once(key, world)


def test_it_sweeps_an_expired_hold_once_when_run_twice(world, key):
    hold = place(key, world)
    Hold.objects.filter(pk=hold.pk).update(expires_at=timezone.now())
    assert sweep_expired_holds() == 1
    assert sweep_expired_holds() == 0
    assert not Hold.objects.exists()
    assert not LedgerEntry.objects.exists()  # withdrawn: no row
    assert Grant.objects.get(pk=world.grant.pk).credits_held == 0
    assert counters_reconcile() == []


def test_it_rolls_the_ledger_up_once_when_run_twice(world, key):
    spend(world, key, times=3)
    assert roll_up_ledger() == 3
    assert roll_up_ledger() == 0
    totals = UsageBucket.objects.aggregate(credits=Sum("credits"), requests=Sum("requests"))
    assert totals == {"credits": 3 * REQUEST_COST, "requests": 3}


def test_it_finds_logs_and_repairs_an_injected_mismatch(world, key, caplog):
    spend(world, key, times=2)
    KeyMonthCounter.objects.filter(api_key=key).update(used=Decimal("7"))  # the injected bug
    with caplog.at_level(logging.WARNING, logger="apps.usage.tasks"):
        assert reconcile_counters() == 1
    [record] = caplog.records
    assert "key_monthly" in record.getMessage() and "repaired" in record.getMessage()
    assert "was 7" in record.getMessage() and f"says {2 * REQUEST_COST}" in record.getMessage()
    assert KeyMonthCounter.objects.get(api_key=key).used == 2 * REQUEST_COST
    assert counters_reconcile() == []


def test_it_repairs_nothing_the_second_time(world, key, caplog):
    spend(world, key)
    Grant.objects.filter(pk=world.grant.pk).update(credits_used=Decimal("100"))
    assert reconcile_counters() == 1
    caplog.clear()
    assert reconcile_counters() == 0
    assert not caplog.records
    assert Grant.objects.get(pk=world.grant.pk).credits_used == REQUEST_COST
