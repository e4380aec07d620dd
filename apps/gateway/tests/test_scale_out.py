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
and no hold is left open. The budgets and those checks are ``tests/budget_races.py``'s, which
``make bench BENCH_ARGS="--workers 2"`` runs too (bench/README.md).

Run against ``anvil_place`` with the held credits left out of its room checks, it fails: every
request admitted, 4.24 credits spent of the grant's 1.5.
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import httpx
import pytest
from django.db import connection

from apps.catalog.models import CatalogModel, Kind
from apps.usage.models import Hold
from apps.usage.reconcile import counters_reconcile
from tests.budget_races import (
    BODY,
    BUDGETS,
    PRICE,
    REQUESTS,
    Answer,
    race_create,
    race_problems,
)
from tests.servers import start_anvil_processes, stop_anvil_processes
from tests.waiting import eventually


async def _fire(urls: list[str], secret: str, model: str) -> list[Answer]:
    """REQUESTS chat requests at once, alternately to each server; a connection each (no
    keep-alive to reuse), as many clients would open."""
    body = {"model": model, **BODY}
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
    races = [
        race_create(team=world.team, owner=world.bob, manager=world.alice, model=model, which=which)
        for which in BUDGETS
    ]

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
        assert race_problems(race, answers[race.which]) == [], race.which

    assert not Hold.objects.exists()
    assert counters_reconcile() == []
