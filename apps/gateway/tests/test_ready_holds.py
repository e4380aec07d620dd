"""A key sending requests in a row is served from ready holds (``apps.usage.ready``): its next
hold is placed as its current request ends. What clients see must not change: the credits
an answer says are left are what the ledger leaves, and a limit lowered while a ready hold
waits refuses the very next request."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import httpx
import pytest
from django.contrib import admin

from apps.grants.admin import GrantAdmin
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.keys.services import api_key_change_limits
from apps.limits.services import member_limit_change
from apps.usage.models import Hold, LedgerEntry
from apps.usage.reconcile import counters_reconcile
from tests.waiting import eventually

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello, ready holds"}]


def chat(gateway) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/chat/completions",
        headers={"authorization": f"Bearer {gateway.secret}"},
        json={"model": "chat-small", "messages": HELLO, "max_tokens": 40},
        timeout=10,
    )


def settled(count: int) -> None:
    eventually(lambda: LedgerEntry.objects.count() == count, what=f"{count} ledger rows")


def ready_hold(gateway) -> Hold:
    """The key's ready hold, once placed: its only open hold after its requests settled."""
    return eventually(
        lambda: Hold.objects.filter(api_key_id=gateway.key.pk).first(),
        what="the key's ready hold",
    )


def test_requests_in_a_row_take_ready_holds_and_are_told_what_the_ledger_leaves(gateway):
    # Set before the key's first request (a change later would keep its next requests from
    # ready holds while the key cache's tombstone lasts).
    ApiKey.objects.filter(pk=gateway.key.pk).update(monthly_limit=Decimal(2))
    served_ready = []
    for number in range(1, 6):
        waiting = set(Hold.objects.values_list("pk", flat=True))
        answer = chat(gateway)
        assert answer.status_code == 200, answer.text
        settled(number)
        entry = LedgerEntry.objects.latest("pk")
        served_ready.append(entry.hold_id in waiting)
        spent = sum(LedgerEntry.objects.values_list("credits", flat=True))
        assert Decimal(answer.headers["x-anvil-credits-remaining"]) == Decimal(2) - spent
        assert Decimal(answer.headers["x-anvil-credits-charged"]) == entry.credits
    assert served_ready[2:] == [True, True, True]  # from the third on: the key is busy
    assert counters_reconcile() == []


def _lower_key_limit(gateway, spent: Decimal) -> str:
    api_key_change_limits(key=gateway.key, monthly_limit=spent, total_limit=None)
    return "key's monthly credit limit"


def _lower_member_limit(gateway, spent: Decimal) -> str:
    world = gateway.world
    member_limit_change(grant=world.grant, user=world.bob, monthly_limit=spent, changed_by=None)
    return "Your monthly credit limit"


def _lower_grant_allocation(gateway, spent: Decimal) -> str:
    grant = Grant.objects.get(pk=gateway.world.grant.pk)
    grant.credits_allocated = spent  # as a staff member saves it in the admin
    request = SimpleNamespace(user=gateway.world.alice)
    GrantAdmin(Grant, admin.site).save_model(request, grant, form=None, change=True)
    return "grant's credits are used up"


@pytest.mark.parametrize(
    "lower", [_lower_key_limit, _lower_member_limit, _lower_grant_allocation],
    ids=["key-monthly", "member-monthly", "grant-allocation"],
)  # fmt: skip
def test_a_limit_lowered_while_a_hold_is_ready_refuses_the_next_request(gateway, lower):
    for number in (1, 2):
        assert chat(gateway).status_code == 200
        settled(number)
    waiting = ready_hold(gateway)
    spent = sum(LedgerEntry.objects.values_list("credits", flat=True))

    reason = lower(gateway, spent)  # nothing is left
    answer = chat(gateway)

    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["code"] == "insufficient_quota"
    assert reason in answer.json()["error"]["message"]
    eventually(lambda: not Hold.objects.filter(pk=waiting.pk).exists(), what="withdrawn")
    assert LedgerEntry.objects.count() == 2  # the ready hold left no row
    assert not LedgerEntry.objects.filter(hold_id=waiting.pk).exists()
    assert counters_reconcile() == []


def test_an_unused_ready_hold_is_given_back(gateway, settings):
    settings.GATEWAY_READY_HOLD_SECONDS = 1
    for number in (1, 2):
        assert chat(gateway).status_code == 200
        settled(number)
    waiting = ready_hold(gateway)

    eventually(lambda: not Hold.objects.exists(), timeout=5, what="the ready hold withdrawn")

    assert not LedgerEntry.objects.filter(hold_id=waiting.pk).exists()
    grant = Grant.objects.get(pk=gateway.world.grant.pk)
    assert grant.credits_held == 0
    assert grant.credits_used == sum(LedgerEntry.objects.values_list("credits", flat=True))
