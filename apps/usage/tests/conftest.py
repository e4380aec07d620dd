from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.keys.models import ApiKey
from apps.usage import ledger
from apps.usage.models import Hold, LedgerEntry, Outcome

_prefixes = itertools.count()


def make_key(world, *, owner=None, name=None, **limits) -> ApiKey:
    """An API key of the world's grant; the secret is irrelevant to accounting."""
    number = next(_prefixes)
    return ApiKey.objects.create(
        grant=world.grant,
        owner=owner or world.alice,
        name=name or f"key-{number}",
        lookup_prefix=f"usage{number:08d}",
        digest="x" * 64,
        expires_at=timezone.now() + dt.timedelta(days=30),
        **limits,
    )


def plan_for(key, world, *, model=None, prompt_tokens=1000, max_completion_tokens=1000, **options):
    """The plan of a request by ``key`` for the world's chat model (0.5 / 1.5 credits per 1M
    tokens) unless ``model`` says otherwise."""
    return ledger.Plan(
        api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id,
        model=model or world.chat_model, prompt_tokens=prompt_tokens,
        max_completion_tokens=max_completion_tokens, **options,
    )  # fmt: skip


def place(key, world, **request) -> Hold:
    """A hold for a request by ``key`` (``plan_for``'s defaults), placed the sync way."""
    return ledger.place(plan_for(key, world, **request))


def settle(hold, prompt_tokens=1000, completion_tokens=1000, outcome=Outcome.OK, **usage):
    """``hold`` settled the sync way for the tokens given (by default its whole request)."""
    usage = ledger.Usage(prompt_tokens, completion_tokens, outcome, usage.pop("latency_ms", 5),
                         **usage)  # fmt: skip
    return ledger.settle(hold, usage)


def spend(key, world, *, prompt_tokens=1000, completion_tokens=1000) -> LedgerEntry:
    """One request by ``key``, held and settled."""
    tokens = {"prompt_tokens": prompt_tokens}
    return settle(place(key, world, **tokens), completion_tokens=completion_tokens, **tokens)


@pytest.fixture
def key(world) -> ApiKey:
    return make_key(world)


def run(coroutine):
    return asyncio.run(coroutine)


class Way:
    """place, settle and withdraw one way: ``sync`` (the ORM, step by step) or ``async``
    (``aplace``/``asettle``/``awithdraw``, each on an event loop of its own: PostgreSQL's
    functions on the async pool, or the sync way in a thread on SQLite)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def place(self, plan: ledger.Plan) -> Hold:
        if self.name == "sync":
            return ledger.place(plan)
        return run(ledger.aplace(plan))

    def settle(self, hold: Hold, usage: ledger.Usage) -> LedgerEntry | None:
        if self.name == "sync":
            return ledger.settle(hold, usage)

        async def settled():
            return await ledger.asettle(hold, usage)

        return run(settled())

    def withdraw(self, hold: Hold) -> bool:
        if self.name == "sync":
            return ledger.withdraw(hold)
        return run(ledger.awithdraw(hold))


WAYS = [Way("sync"), Way("async")]


@pytest.fixture(params=WAYS, ids=repr)
def way(request) -> Way:
    """Each test using it runs both ways (the test needs a transactional database: the async
    way runs on connections of its own)."""
    return request.param


# 1000 prompt + 1000 completion tokens of chat-small: 0.0005 + 0.0015 credits.
REQUEST_COST = Decimal("0.002")
