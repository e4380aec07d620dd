"""The ledger's three operations, sync (any database) and async (PostgreSQL's functions from
the event loop): both ways hold, charge and refuse alike."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.usage import ledger
from apps.usage.exceptions import QuotaExceeded
from apps.usage.models import Hold, LedgerEntry, Outcome
from apps.usage.reconcile import counters_reconcile
from apps.usage.tests.conftest import REQUEST_COST, make_key, plan_for, run

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_holds_then_charges_the_real_cost_with_one_row(world, way):
    place, settle = way.place, way.settle
    key = make_key(world)
    hold = place(plan_for(key, world))
    assert hold.amount == REQUEST_COST
    assert ApiKey.objects.get(pk=key.pk).credits_held == REQUEST_COST
    entry = settle(hold, ledger.Usage(1000, 500, latency_ms=12))
    assert entry.credits == Decimal("0.00125")  # 1000 * 0.5 + 500 * 1.5 per 1M
    row = LedgerEntry.objects.get()
    assert (row.pk, row.credits, row.hold_id, row.capped) == (
        entry.pk,
        entry.credits,
        hold.pk,
        False,
    )
    key.refresh_from_db()
    assert (key.credits_held, key.credits_used) == (0, Decimal("0.00125"))
    assert not Hold.objects.exists()
    assert counters_reconcile() == []
    assert settle(hold, ledger.Usage(1, 1)) is None  # once


def test_a_cost_beyond_the_hold_is_charged_the_hold_and_capped(world, way):
    place, settle = way.place, way.settle
    hold = place(plan_for(make_key(world), world, max_completion_tokens=10))
    entry = settle(hold, ledger.Usage(5000, 5000))
    assert (entry.credits, entry.capped) == (hold.amount, True)
    assert LedgerEntry.objects.get().capped


def test_each_capped_row_is_logged_once_at_warning_without_text(world, way, caplog):
    place, settle = way.place, way.settle
    key = make_key(world)
    fits = place(plan_for(key, world))
    capped = [place(plan_for(key, world, max_completion_tokens=10)) for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="apps.usage.capped"):
        settle(fits, ledger.Usage(1000, 500))
        for hold in capped:
            settle(hold, ledger.Usage(5000, 5000))
        settle(capped[0], ledger.Usage(5000, 5000))  # ended already: no second row, no line
    warnings = [r for r in caplog.records if r.name == "apps.usage.capped"]
    assert [(r.levelname, r.hold_id) for r in warnings] == [("WARNING", h.pk) for h in capped]
    real_cost = Decimal("0.01")  # 5000 * 0.5 + 5000 * 1.5 per 1M
    for record, hold in zip(warnings, capped, strict=True):
        message = record.getMessage()
        assert f"key {key.pk}" in message and f"model {hold.model_id}" in message
        assert (Decimal(record.hold_amount), Decimal(record.real_cost)) == (hold.amount, real_cost)
        assert f"cost {record.real_cost}" in message and f"held {hold.amount}" in message
    assert LedgerEntry.objects.filter(capped=True).count() == 2


def test_a_withdrawn_hold_leaves_no_trace(world, way):
    place, settle, withdraw = way.place, way.settle, way.withdraw
    key = make_key(world)
    hold = place(plan_for(key, world))
    assert withdraw(hold) is True
    assert withdraw(hold) is False
    assert settle(hold, ledger.Usage(1, 1)) is None
    key.refresh_from_db()
    assert (key.credits_held, key.credits_used) == (0, 0)
    assert not LedgerEntry.objects.exists()
    assert counters_reconcile() == []


def test_a_refusal_names_the_binding_budget_and_changes_nothing(world, way):
    place = way.place
    key = make_key(world, monthly_limit=Decimal("0.001"))
    with pytest.raises(QuotaExceeded) as refused:
        place(plan_for(key, world))
    assert refused.value.limit == "key_monthly"
    assert not Hold.objects.exists()
    assert Grant.objects.get(pk=world.grant.pk).credits_held == 0


def test_a_partial_hold_lowers_the_completion_tokens_to_what_is_left(world, way):
    place = way.place
    key = make_key(world, total_limit=Decimal("0.0011"))  # 1000 prompt + 400 completion tokens
    hold = place(plan_for(key, world, allow_partial=True))
    assert (hold.max_completion_tokens, hold.amount) == (400, Decimal("0.0011"))


def test_settlements_that_finish_together_are_written_together(world):
    key = make_key(world)

    async def many():
        holds = [await ledger.aplace(plan_for(key, world)) for _ in range(20)]
        return await asyncio.gather(*(ledger.asettle(h, ledger.Usage(100, 100)) for h in holds))

    entries = run(many())
    assert len({entry.pk for entry in entries}) == 20
    assert LedgerEntry.objects.count() == 20
    key.refresh_from_db()
    assert (key.credits_held, key.credits_used) == (0, 20 * Decimal("0.0002"))
    assert counters_reconcile() == []


def test_the_budgets_read_at_placement_tell_what_is_left_after_settling(world):
    key = make_key(world, total_limit=Decimal("1"))

    async def one():
        hold = await ledger.aplace(plan_for(key, world))
        usage = ledger.Usage(1000, 100, Outcome.OK)
        after = ledger.budgets_after(hold, usage)
        await ledger.asettle(hold, usage)
        return after

    after = run(one())
    assert after.key_total.left == Decimal("1") - Decimal("0.00065")
