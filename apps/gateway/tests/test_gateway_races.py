"""200 concurrent requests against a nearly exhausted budget never spend past it, and the
counters equal the ledger afterwards — for each of the four budgets."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.keys.services import api_key_change_limits
from apps.limits.services import member_limit_set
from apps.usage.models import LedgerEntry, MemberMonthCounter
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 200
# Each request holds prompt (upper bound) + 20 completion tokens and really costs less, so
# about this many credits fit a few requests at a time.
BUDGET = Decimal("0.0002")


async def fire(gateway, model: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=REQUESTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20}
        headers = {"Authorization": f"Bearer {gateway.secret}"}
        return await asyncio.gather(
            *[
                client.post(f"{gateway.url}/chat/completions", json=body, headers=headers)
                for _ in range(REQUESTS)
            ]
        )


def limit_budget(gateway, which: str) -> None:
    world = gateway.world
    if which == "grant":
        world.grant.credits_allocated = BUDGET
        world.grant.save()
    elif which == "key_total":
        api_key_change_limits(key=gateway.key, monthly_limit=None, total_limit=BUDGET)
    elif which == "key_monthly":
        api_key_change_limits(key=gateway.key, monthly_limit=BUDGET, total_limit=None)
    else:
        member_limit_set(
            grant=world.grant, user=world.bob, monthly_limit=BUDGET, changed_by=world.alice
        )


def spent(gateway, which: str) -> Decimal:
    if which == "grant":
        return Grant.objects.get(pk=gateway.world.grant.pk).credits_used
    if which == "member_monthly":
        return MemberMonthCounter.objects.get(grant=gateway.world.grant).used
    return ApiKey.objects.get(pk=gateway.key.pk).credits_used


@pytest.mark.parametrize("which", ["key_total", "key_monthly", "member_monthly", "grant"])
def test_it_never_spends_past_a_budget(gateway, which):
    gateway.add_model("busy-chat", max_concurrency=REQUESTS, queue_size=REQUESTS)
    limit_budget(gateway, which)
    responses = asyncio.run(fire(gateway, "busy-chat"))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1
    refusals = [r.json()["error"] for r in responses if r.status_code == 429]
    assert all(e["code"] == "insufficient_quota" for e in refusals)
    assert {r.headers.get("x-anvil-limited-by") for r in responses if r.status_code == 200}
    assert spent(gateway, which) <= BUDGET
    wait_for_settlements()
    ledger = sum(e.credits for e in LedgerEntry.objects.all())
    assert ledger == spent(gateway, which)
    assert LedgerEntry.objects.count() == statuses.count(200)
