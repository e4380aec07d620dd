"""Withdrawing a hold (``steps.withdraw``): the accounts end as if it had never been
placed — no hold, the counters as before, no ledger row — once, whichever way it runs."""

from __future__ import annotations

import asyncio

import pytest

from apps.usage.hot import ahold_place, ahold_withdraw
from apps.usage.models import LedgerEntry, Outcome
from apps.usage.services import hold_place, hold_settle, hold_withdraw
from apps.usage.tests.conftest import make_key
from apps.usage.tests.test_hot_calls import accounts

pytestmark = pytest.mark.django_db(transaction=True)

WAYS = ["sync", "async"]


def place(way: str, key, world):
    args = {
        "api_key_id": key.pk, "grant_id": key.grant_id, "user_id": key.owner_id,
        "catalog_model": world.chat_model, "prompt_tokens": 1000,
        "max_completion_tokens": 1000,
    }  # fmt: skip
    if way == "sync":
        return hold_place(**args)
    return asyncio.run(ahold_place(**args))


def withdraw(way: str, hold_id: int) -> bool:
    if way == "sync":
        return hold_withdraw(hold_id=hold_id)
    return asyncio.run(ahold_withdraw(hold_id=hold_id))


def served(key, world) -> None:
    """One request served and settled, so the month's counters have rows and amounts."""
    hold = hold_place(
        api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id,
        catalog_model=world.chat_model, prompt_tokens=1000, max_completion_tokens=1000,
    )  # fmt: skip
    hold_settle(
        hold_id=hold.pk, prompt_tokens=800, completion_tokens=300, outcome=Outcome.OK,
        latency_ms=5, estimated=False,
    )  # fmt: skip


@pytest.mark.parametrize("way", WAYS)
def test_it_leaves_the_accounts_as_they_were_before_the_hold(world, way):
    key = make_key(world)
    served(key, world)
    before = accounts(key)
    hold = place(way, key, world)
    assert accounts(key) != before  # held
    assert withdraw(way, hold.pk) is True
    assert accounts(key) == before  # no hold, same counters, no new ledger row


@pytest.mark.parametrize("way", WAYS)
def test_it_withdraws_a_hold_only_once_and_never_a_settled_one(world, way):
    key = make_key(world)
    hold = place(way, key, world)
    assert withdraw(way, hold.pk) is True
    after = accounts(key)
    assert withdraw(way, hold.pk) is False
    assert hold_settle(
        hold_id=hold.pk, prompt_tokens=1, completion_tokens=1, outcome=Outcome.OK,
        latency_ms=1, estimated=False,
    ) is None  # fmt: skip
    assert accounts(key) == after

    settled = place(way, key, world)
    hold_settle(
        hold_id=settled.pk, prompt_tokens=0, completion_tokens=0, outcome=Outcome.CANCELLED,
        latency_ms=1, estimated=False,
    )  # fmt: skip
    after = accounts(key)
    assert withdraw(way, settled.pk) is False
    assert accounts(key) == after
    assert LedgerEntry.objects.count() == 1  # the settled one's
