"""Withdrawing a hold (``ledger.withdraw``, ``ledger.awithdraw``): the accounts end as if it had
never been placed — no hold, the counters as before, no ledger row — once, whichever way it
runs. A withdrawal takes the hold itself (the one its placement returned), not its id."""

from __future__ import annotations

import pytest

from apps.usage import ledger
from apps.usage.models import LedgerEntry, Outcome
from apps.usage.tests.conftest import make_key, place, plan_for, settle
from apps.usage.tests.test_ledger_ways import accounts

pytestmark = pytest.mark.django_db(transaction=True)


def served(key, world) -> None:
    """One request served and settled, so the month's counters have rows and amounts."""
    settle(place(key, world), prompt_tokens=800, completion_tokens=300)


def test_it_leaves_the_accounts_as_they_were_before_the_hold(world, way):
    key = make_key(world)
    served(key, world)
    before = accounts(key)
    hold = way.place(plan_for(key, world))
    assert accounts(key) != before  # held
    assert way.withdraw(hold) is True
    assert accounts(key) == before  # no hold, same counters, no new ledger row


def test_it_withdraws_a_hold_only_once_and_never_a_settled_one(world, way):
    key = make_key(world)
    hold = way.place(plan_for(key, world))
    assert way.withdraw(hold) is True
    after = accounts(key)
    assert way.withdraw(hold) is False
    assert way.settle(hold, ledger.Usage(1, 1)) is None
    assert accounts(key) == after

    settled = way.place(plan_for(key, world))
    way.settle(settled, ledger.Usage.unused(Outcome.CANCELLED, latency_ms=1))
    after = accounts(key)
    assert way.withdraw(settled) is False
    assert accounts(key) == after
    assert LedgerEntry.objects.count() == 1  # the settled one's
