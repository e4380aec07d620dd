"""Ready holds (apps/gateway/ready.py): after a key's request, its next request's hold is
placed ahead; the next request takes it, and nothing of the accounting changes: one ledger
row per request, counters equal to the ledger, an unused ready hold withdrawn without a
trace, none kept where the budget is nearly spent or the limits changed."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest
from django.db import connection

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.keys.services import api_key_change_limits
from apps.usage.models import Hold, LedgerEntry, Outcome
from apps.usage.reconcile import counters_reconcile
from tests.servers import start_uvicorn
from tests.world import wait_for_settlements

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="ready holds are PostgreSQL's"),
]

HELLO = [{"role": "user", "content": "Hello there"}]


def chat(gateway, *, max_tokens: int = 8, url: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{url or gateway.url}/chat/completions",
        headers={"authorization": f"Bearer {gateway.secret}"},
        json={"model": "chat-small", "messages": HELLO, "max_tokens": max_tokens},
        timeout=10,
    )


def open_holds(wait: float = 2.0, count: int = 1) -> list[Hold]:
    """The open holds, once there are ``count`` (a ready hold is placed in the background)."""
    deadline = time.monotonic() + wait
    while True:
        holds = list(Hold.objects.order_by("pk"))
        if len(holds) == count or time.monotonic() > deadline:
            return holds
        time.sleep(0.01)


def settled_rows() -> int:
    return LedgerEntry.objects.count()


def wait_rows(count: int) -> None:
    deadline = time.monotonic() + 5
    while settled_rows() < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_next_request_of_a_key_takes_the_hold_placed_for_it(gateway):
    assert chat(gateway).status_code == 200
    wait_rows(1)
    (ready,) = open_holds()  # placed for the next request: the size of this one
    assert ready.api_key_id == gateway.key.pk and ready.max_completion_tokens == 8

    answer = chat(gateway, max_tokens=5)  # fits in it
    assert answer.status_code == 200
    wait_rows(2)
    (again,) = open_holds()
    assert again.pk > ready.pk  # the first was taken and settled; a new one waits
    assert not Hold.objects.filter(pk=ready.pk).exists()
    entry = LedgerEntry.objects.order_by("pk").last()
    assert entry.outcome == Outcome.OK
    assert Decimal(answer.headers["x-anvil-credits-charged"]) == entry.credits
    assert answer.json()["usage"]["completion_tokens"] <= 5  # the request's own max_tokens

    wait_for_settlements()  # withdraws the ready hold: no row, nothing held
    assert settled_rows() == 2
    assert ApiKey.objects.get(pk=gateway.key.pk).credits_held == 0
    assert Grant.objects.get(pk=gateway.world.grant.pk).credits_held == 0
    assert counters_reconcile() == []


def test_a_larger_request_places_its_own_hold_and_the_ready_one_is_withdrawn(gateway):
    assert chat(gateway, max_tokens=4).status_code == 200
    wait_rows(1)
    (small,) = open_holds()
    assert chat(gateway, max_tokens=50).status_code == 200
    wait_rows(2)
    (ready,) = open_holds()
    assert ready.pk != small.pk and ready.max_completion_tokens == 50
    wait_for_settlements()
    assert settled_rows() == 2  # the withdrawn hold left no row
    assert counters_reconcile() == []


def test_an_unused_ready_hold_is_withdrawn_without_a_trace(gateway, settings):
    settings.GATEWAY_READY_HOLD_SECONDS = 1
    assert chat(gateway).status_code == 200
    wait_rows(1)
    assert len(open_holds()) == 1
    assert open_holds(wait=3, count=0) == []
    assert settled_rows() == 1
    assert ApiKey.objects.get(pk=gateway.key.pk).credits_held == 0
    assert counters_reconcile() == []


def test_no_ready_hold_stays_where_the_budget_is_nearly_spent(gateway):
    # 8 + the prompt's tokens cost ~0.00002 credits: room for fewer than ten more
    api_key_change_limits(key=gateway.key, total_limit=Decimal("0.0001"), monthly_limit=None)
    assert chat(gateway).status_code == 200
    wait_rows(1)
    time.sleep(0.3)  # the ready hold was placed, found short of room, withdrawn
    assert open_holds(wait=1, count=0) == []
    assert settled_rows() == 1
    assert counters_reconcile() == []


def test_a_ready_hold_placed_under_other_limits_is_not_used(gateway):
    assert chat(gateway).status_code == 200
    wait_rows(1)
    (ready,) = open_holds()
    spent = ApiKey.objects.get(pk=gateway.key.pk).credits_used
    api_key_change_limits(key=gateway.key, total_limit=spent, monthly_limit=None)

    refused = chat(gateway)

    assert refused.status_code == 429  # from the new limit, not served from the ready hold
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert not Hold.objects.filter(pk=ready.pk).exists()  # withdrawn
    wait_for_settlements()
    assert settled_rows() == 1
    assert counters_reconcile() == []


def test_a_graceful_shutdown_withdraws_the_ready_holds(gateway):
    from portal.asgi import application

    server = start_uvicorn(application)  # lifespan on, as uvicorn runs Anvil
    try:
        assert chat(gateway, url=f"{server.url}/api/v1").status_code == 200
        wait_rows(1)
        assert len(open_holds()) == 1
    finally:
        server.stop()
    assert open_holds(wait=1, count=0) == []
    assert settled_rows() == 1
    assert counters_reconcile() == []


def test_a_ready_hold_waits_for_the_next_request_from_the_end_of_a_long_one(gateway, settings):
    settings.GATEWAY_READY_HOLD_SECONDS = 1
    gateway.add_model("slow-chat", upstream="chat-small@latency-ms=1500")

    def slow() -> httpx.Response:
        return httpx.post(
            f"{gateway.url}/chat/completions",
            headers={"authorization": f"Bearer {gateway.secret}"},
            json={"model": "slow-chat", "messages": HELLO, "max_tokens": 8},
            timeout=10,
        )

    assert slow().status_code == 200  # 1.5 s: longer than the ready hold's idle wait
    wait_rows(1)
    (ready,) = open_holds()
    assert slow().status_code == 200
    wait_rows(2)
    assert not Hold.objects.filter(pk=ready.pk).exists()  # taken by the second request
    assert LedgerEntry.objects.filter(outcome=Outcome.OK).count() == 2
    wait_for_settlements()
    assert counters_reconcile() == []


def test_the_remaining_credits_told_are_the_ledgers_request_after_request(gateway):
    """The answer's budgets come from its hold; a ready hold was placed while the request
    before still held its credits, and the settlement heard after it has them charged."""
    told = []
    for _ in range(5):
        answer = httpx.post(
            f"{gateway.url}/chat/completions",
            headers={"authorization": f"Bearer {gateway.secret}"},
            json={"model": "chat-small", "messages": HELLO},  # no max_tokens: the whole window
            timeout=10,
        )
        assert answer.status_code == 200
        told.append(Decimal(answer.headers["x-anvil-credits-remaining"]))
        wait_rows(len(told))
        time.sleep(0.05)  # a client reading its answer; the settlement is heard meanwhile
    charges = list(LedgerEntry.objects.order_by("pk").values_list("credits", flat=True))
    spent = [sum(charges[: n + 1]) for n in range(5)]
    assert told == [Decimal(1000) - s for s in spent]
