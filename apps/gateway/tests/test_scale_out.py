"""Two gateway processes against one PostgreSQL and one Redis keep every budget as one process
does (issue 19, "Several processes, one truth").

Two independent Anvil servers (uvicorn, one worker each, production settings) run on two
loopback ports; after one request to each (so both have read the key), 200 concurrent chat
requests, sent alternately to each, race for one budget, set so that only some of them fit
(about a third). In turn for each of the four budgets (the grant's allocation, the key's total
limit, the key's monthly limit, the member's monthly limit in the grant), each on a grant and
key of its own: nothing is spent past the limit; every request is either answered 200 and
charged what the ledger charged it, or refused with 429 ``insufficient_quota`` naming that
budget; both processes admitted requests and both refused some; the counters equal the ledger
and no hold is left open.

Run against ``anvil_place`` with the held credits left out of its room checks, it fails: every
request admitted, 4.24 credits spent of the grant's 1.5.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from apps.catalog.models import CatalogModel, Kind
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.keys.services import api_key_create
from apps.limits.services import member_limit_set
from apps.usage.exceptions import Limit
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter, Outcome
from apps.usage.reconcile import counters_reconcile
from tests.servers import start_anvil_processes, stop_anvil_processes
from tests.waiting import eventually

REQUESTS = 200
BUDGETS = ["grant", "key_total", "key_monthly", "member_monthly"]
# 0.001 credits a token; a request ("Hi", max_tokens 20) is charged a few hundredths of a
# credit and holds a little more, so about a quarter of the requests fit.
PRICE = Decimal("1000")
BUDGET = Decimal("1.5")
OPEN = Decimal("1000")  # the budgets not under test: far above what a run spends


@dataclass(frozen=True)
class Race:
    which: str
    grant: Grant
    key: ApiKey
    secret: str


def _race(world, model: CatalogModel, which: str) -> Race:
    """A grant of the test's team and a key of Bob's in it, with ``which`` the one budget
    that binds."""
    today = timezone.localdate()
    grant = Grant.objects.create(
        team=world.team,
        identifier=f"scale-out-{which.replace('_', '-')}",
        credits_allocated=BUDGET if which == "grant" else OPEN,
        valid_from=today - dt.timedelta(days=30),
        valid_until=today + dt.timedelta(days=335),
    )
    grant.allowed_models.add(model)
    key, secret = api_key_create(
        grant=grant,
        owner=world.bob,
        name=f"scale-out {which}",
        total_limit=BUDGET if which == "key_total" else None,
        monthly_limit=BUDGET if which == "key_monthly" else None,
    )
    if which == "member_monthly":
        member_limit_set(grant=grant, user=world.bob, monthly_limit=BUDGET, changed_by=world.alice)
    return Race(which, grant, key, secret)


def _spent(race: Race) -> tuple[Decimal, Decimal]:
    """The binding budget's used and held counters, as PostgreSQL has them now."""
    if race.which == "grant":
        grant = Grant.objects.get(pk=race.grant.pk)
        return grant.credits_used, grant.credits_held
    if race.which == "key_total":
        key = ApiKey.objects.get(pk=race.key.pk)
        return key.credits_used, key.credits_held
    if race.which == "key_monthly":
        counter = KeyMonthCounter.objects.get(api_key=race.key)
    else:
        counter = MemberMonthCounter.objects.get(grant=race.grant, user=race.key.owner)
    return counter.used, counter.held


@dataclass(frozen=True)
class Answer:
    server: int  # 0 or 1: which process it was sent to
    status: int
    charged: Decimal | None = None  # X-Anvil-Credits-Charged
    code: str | None = None
    message: str = ""


async def _fire(urls: list[str], secret: str, model: str) -> list[Answer]:
    """REQUESTS chat requests at once, alternately to each server; a connection each (no
    keep-alive to reuse), as many clients would open."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20}
    headers = {"Authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits, trust_env=False) as client:

        async def one(index: int) -> Answer:
            server = index % len(urls)
            answer = await client.post(
                f"{urls[server]}/api/v1/chat/completions", json=body, headers=headers
            )
            if answer.status_code == 200:
                charged = Decimal(answer.headers["x-anvil-credits-charged"])
                return Answer(server, 200, charged=charged)
            error = answer.json().get("error", {})
            return Answer(
                server, answer.status_code, code=error.get("code"), message=error.get("message", "")
            )

        # One request to each server first, so each has read the key (its first request of
        # a key reads it from PostgreSQL) and the race starts even.
        warm = [await one(index) for index in range(len(urls))]
        return warm + await asyncio.gather(*(one(index) for index in range(REQUESTS)))


def _start_both(tmp_path) -> list:
    """Two servers, started side by side (each takes a few seconds to boot)."""
    servers: list = [None, None]
    failures: list[BaseException] = []

    def start(index: int) -> None:
        try:
            servers[index] = start_anvil_processes(
                workers=1, log_path=tmp_path / f"anvil-{index + 1}.log"
            )
        except BaseException as exc:  # re-raised below, after both tried
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        for server in servers:
            if server is not None:
                stop_anvil_processes(server)
        raise failures[0]
    return servers


@pytest.mark.django_db(transaction=True)
def test_two_processes_never_spend_past_any_budget(world, devbackend, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("two server processes share the ledger through PostgreSQL")
    world.backend.base_url = f"{devbackend}/v1"
    world.backend.save()
    model = CatalogModel.objects.create(
        name="scale-out-chat", backend=world.backend, kind=Kind.CHAT,
        upstream_model="org/chat-small@latency-ms=20",
        prompt_price=PRICE, completion_price=PRICE, context_window=8192,
        max_concurrency=REQUESTS, queue_size=REQUESTS,
    )  # fmt: skip
    races = [_race(world, model, which) for which in BUDGETS]

    servers = _start_both(tmp_path)
    urls = [server.url for server in servers]
    answers = {}
    try:
        for race in races:
            answers[race.which] = asyncio.run(_fire(urls, race.secret, model.name))
            # Every settlement written, and the ready hold the burst left (if any) withdrawn
            # once idle (GATEWAY_READY_HOLD_SECONDS), with both servers still running.
            eventually(
                lambda race=race: not Hold.objects.filter(api_key=race.key).exists(),
                timeout=15, what=f"every hold of the {race.which} race ended",
            )  # fmt: skip
    finally:
        for server in servers:
            stop_anvil_processes(server)

    for race in races:
        seen = answers[race.which]
        statuses = Counter((a.server, a.status, a.code) for a in seen)
        used, held = _spent(race)
        assert used <= BUDGET, (race.which, used, statuses)  # no overshoot
        assert held == 0

        # Each request was answered and charged, or refused for want of credits in the
        # budget under test.
        assert {(a.status, a.code) for a in seen} == {(200, None), (429, "insufficient_quota")}, (
            race.which,
            statuses,
        )
        label = Limit(race.which).label
        assert all(a.message.startswith(label) for a in seen if a.status == 429), race.which
        # Both processes admitted requests and both refused some: they raced for the budget.
        assert {a.server for a in seen if a.status == 200} == {0, 1}, (race.which, statuses)
        assert {a.server for a in seen if a.status == 429} == {0, 1}, (race.which, statuses)
        # A good part of the budget was spent before the refusals.
        assert used > BUDGET / 2, (race.which, used)

        # Each answered request is one ok ledger row of its key, charged what it was told;
        # nothing else is charged.
        entries = LedgerEntry.objects.filter(api_key=race.key)
        charged = sorted(a.charged for a in seen if a.status == 200)
        assert all(credits > 0 for credits in charged)
        assert sorted(e.credits for e in entries) == charged, race.which
        assert {e.outcome for e in entries} == {Outcome.OK}
        assert sum(charged) == used

    assert not Hold.objects.exists()
    assert counters_reconcile() == []
