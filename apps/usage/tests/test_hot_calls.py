"""PostgreSQL's one-statement holds and settlements (``pg_temp.anvil_hold_reserve`` and
``pg_temp.anvil_hold_settle``, driven by ``apps.usage.hot``) against the step sequences the
services drive through Django: the same inputs give the same holds, refusals, ledger rows,
counters and reported budgets."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone
from psycopg import AsyncCursor

from apps.catalog.models import CatalogModel
from apps.core.exceptions import NotFound
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.limits.services import member_limit_set
from apps.usage import prepared
from apps.usage.credits import credits_for
from apps.usage.exceptions import QuotaExceeded
from apps.usage.hot import ahold_place, ahold_settle
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter, Outcome
from apps.usage.selectors import budget_status
from apps.usage.services import hold_place, hold_settle_reported, holds_sweep
from apps.usage.steps import settled_status
from apps.usage.tests.conftest import make_key

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the calls are PostgreSQL's"),
]

WAYS = ["steps", "call"]
LEDGER_COLUMNS = (
    "api_key_id", "user_id", "grant_id", "model_id", "period", "prompt_tokens",
    "completion_tokens", "credits", "outcome", "latency_ms", "estimated", "capped",
)  # fmt: skip
HOLD_COLUMNS = (
    "amount", "prompt_tokens", "max_completion_tokens", "prompt_price", "completion_price",
    "period",
)  # fmt: skip


def place(way: str, key: ApiKey, model, **request) -> Hold:
    args = {
        "api_key_id": key.pk, "grant_id": key.grant_id, "user_id": key.owner_id,
        "catalog_model": model, "prompt_tokens": request.pop("prompt_tokens", 1000),
        "max_completion_tokens": request.pop("max_completion_tokens", 1000), **request,
    }  # fmt: skip
    if way == "steps":
        return hold_place(**args)
    return asyncio.run(ahold_place(**args))


def settle(way: str, key: ApiKey, hold_id: int, **usage):
    args = {
        "hold_id": hold_id, "api_key_id": key.pk, "grant_id": key.grant_id,
        "user_id": key.owner_id, "prompt_tokens": usage.pop("prompt_tokens", 1000),
        "completion_tokens": usage.pop("completion_tokens", 500),
        "outcome": usage.pop("outcome", Outcome.OK), "latency_ms": usage.pop("latency_ms", 7),
        "estimated": usage.pop("estimated", False),
    }  # fmt: skip
    if way == "steps":
        return hold_settle_reported(**args)
    return asyncio.run(ahold_settle(**args))


def accounts(key: ApiKey) -> dict:
    """Everything a hold or a settlement writes, for the key's grant."""
    grant = Grant.objects.get(pk=key.grant_id)
    key = ApiKey.objects.get(pk=key.pk)
    return {
        "grant": (grant.credits_used, grant.credits_held),
        "key": (key.credits_used, key.credits_held),
        "key months": list(KeyMonthCounter.objects.values_list("api_key_id", "used", "held")),
        "member months": list(
            MemberMonthCounter.objects.values_list("user_id", "used", "held").order_by("user_id")
        ),
        "holds": list(Hold.objects.order_by("pk").values_list(*HOLD_COLUMNS)),
        "ledger": list(LedgerEntry.objects.order_by("pk").values_list(*LEDGER_COLUMNS)),
    }


def start_over(key: ApiKey) -> None:
    """No request ever made: the next way starts where the first did."""
    LedgerEntry.objects.all().delete()
    Hold.objects.all().delete()
    KeyMonthCounter.objects.all().delete()
    MemberMonthCounter.objects.all().delete()
    ApiKey.objects.filter(pk=key.pk).update(credits_used=0, credits_held=0)
    Grant.objects.filter(pk=key.grant_id).update(credits_used=0, credits_held=0)


def each_way(key: ApiKey, requests) -> dict:
    """``requests(way)`` both ways from the same start: {way: (its results, the accounts)}."""
    outcomes = {}
    for way in WAYS:
        start_over(key)
        outcomes[way] = (requests(way), accounts(key))
    return outcomes


def entry_of(settlement) -> tuple | None:
    if settlement.entry is None:
        return None
    return tuple(getattr(settlement.entry, column) for column in LEDGER_COLUMNS)


def test_it_holds_charges_and_reports_like_the_steps(world):
    member_limit_set(
        grant=world.grant, user=world.alice, monthly_limit=Decimal("0.006"), changed_by=None
    )
    key = make_key(world, total_limit=Decimal("0.01"), monthly_limit=Decimal("0.008"))

    def requests(way: str) -> list:
        results = []
        for usage in (
            {"completion_tokens": 500},
            {"prompt_tokens": 1200, "completion_tokens": 3000},  # more than held: capped
            {"prompt_tokens": 0, "completion_tokens": 0, "outcome": Outcome.BACKEND_ERROR},
            {"completion_tokens": 7, "estimated": True, "outcome": Outcome.CLIENT_DISCONNECTED},
        ):
            hold = place(way, key, world.chat_model)
            settlement = settle(way, key, hold.pk, **usage)
            results.append((hold.amount, entry_of(settlement), settlement.status))
        with pytest.raises(QuotaExceeded) as refused:  # 0.00125 + 0.002 + 0 + 0.000511 used
            place(way, key, world.chat_model, max_completion_tokens=2000)
        lowered = place(way, key, world.chat_model, max_completion_tokens=2000, allow_partial=True)
        settlement = settle(way, key, lowered.pk, completion_tokens=2000)
        again = settle(way, key, lowered.pk)
        return [
            *results, (refused.value.limit, refused.value.remaining),
            (lowered.max_completion_tokens, lowered.amount),
            (entry_of(settlement), settlement.status), (entry_of(again), again.status),
        ]  # fmt: skip

    outcomes = each_way(key, requests)

    assert outcomes["call"] == outcomes["steps"]
    results, books = outcomes["call"]
    assert results[4] == ("member_monthly", Decimal("0.002239"))  # 0.006 - 0.003761
    assert results[5] == (1159, Decimal("0.002239"))  # 0.0005 + 1159 * 0.0000015
    assert results[7] == (None, results[6][1])  # settled once; the budgets still reported
    assert [row[-1] for row in books["ledger"]] == [False, True, False, False, True]
    assert books["member months"] == [(world.alice.pk, Decimal("0.006"), Decimal(0))]
    assert books["holds"] == []


@pytest.mark.parametrize(
    ("prompt_price", "completion_price", "prompt_tokens", "completion_tokens"),
    [
        ("0.5", "0", 1, 0),  # 0.0000005: half a micro-credit rounds up
        ("0.499999", "0", 1, 0),  # just under half: 0
        ("0.333333", "1.000001", 3, 1),  # rounded once, on the sum
        ("19.78", "167.66", 18, 16),  # the Comtegra example: 0.003039
        ("0", "0", 1000, 1000),
        ("123456.789012", "98765.432109", 123_456_789, 987_654),
    ],
)
def test_it_rounds_the_charge_like_credits_for(
    world, prompt_price, completion_price, prompt_tokens, completion_tokens
):
    model = CatalogModel.objects.create(
        name="priced", backend=world.backend, upstream_model="priced", context_window=10**9,
        prompt_price=Decimal(prompt_price), completion_price=Decimal(completion_price),
    )  # fmt: skip
    Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=Decimal(10**12))
    key = make_key(world)
    tokens = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}

    def requests(way: str):
        hold = place(way, key, model, prompt_tokens=prompt_tokens, max_completion_tokens=10**6)
        return hold.amount, entry_of(settle(way, key, hold.pk, **tokens))

    outcomes = each_way(key, requests)

    assert outcomes["call"] == outcomes["steps"]
    (_, entry), _ = outcomes["call"]
    prices = {"prompt_price": model.prompt_price, "completion_price": model.completion_price}
    assert entry[7] == credits_for(**tokens, **prices)


LITTLE = Decimal("0.0015")  # less than one request costs (0.002)


@pytest.mark.parametrize("budget", ["grant", "key_total", "key_monthly", "member_monthly"])
def test_it_refuses_naming_each_budget_like_the_steps(world, budget):
    if budget == "grant":
        Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=LITTLE)
    if budget == "member_monthly":
        member_limit_set(grant=world.grant, user=world.alice, monthly_limit=LITTLE, changed_by=None)
    limits = {"key_total": {"total_limit": LITTLE}, "key_monthly": {"monthly_limit": LITTLE}}
    key = make_key(world, **limits.get(budget, {}))

    def requests(way: str):
        with pytest.raises(QuotaExceeded) as refused:
            place(way, key, world.chat_model)
        return refused.value.limit, refused.value.remaining, refused.value.message

    outcomes = each_way(key, requests)

    assert outcomes["call"] == outcomes["steps"]
    (limit, remaining, _message), books = outcomes["call"]
    assert (limit, remaining) == (budget, LITTLE)
    # Rolled back whole: no hold, nothing held, not even the month counter rows it inserted.
    assert books["grant"] == books["key"] == (0, 0)
    assert books["holds"] == books["ledger"] == []
    assert all(held == 0 for *_, held in books["key months"] + books["member months"])


def test_it_reports_the_budgets_of_a_hold_the_sweeper_claimed(world):
    key = make_key(world, total_limit=Decimal(1))

    def requests(way: str):
        hold = place(way, key, world.chat_model, ttl_seconds=60)
        holds_sweep(now=timezone.now() + dt.timedelta(seconds=61))
        settlement = settle(way, key, hold.pk)
        return settlement.entry, settlement.status

    outcomes = each_way(key, requests)

    assert outcomes["call"][0] == outcomes["steps"][0]
    (entry, status), books = outcomes["call"]
    assert entry is None
    assert (status.limited_by, status.remaining, status.key_total.held) == ("key_total", 1, 0)
    assert books["ledger"] == []


@pytest.mark.parametrize("way", WAYS)
def test_it_refuses_to_report_a_key_of_another_grant(world, way):
    key = make_key(world)
    other = Grant.objects.create(
        team=world.team, identifier="other-grant", credits_allocated=Decimal(1),
        valid_from=world.grant.valid_from, valid_until=world.grant.valid_until,
    )  # fmt: skip
    hold = place(way, key, world.chat_model)
    settle(way, key, hold.pk)
    key.grant_id = other.pk  # the hold is gone: the budgets reported are this key's in ``other``

    with pytest.raises(NotFound, match="does not belong to this grant"):
        settle(way, key, hold.pk)


@pytest.mark.parametrize("counter", [KeyMonthCounter, MemberMonthCounter])
def test_it_logs_a_missing_counter_row_and_still_settles_like_the_steps(world, counter, caplog):
    key = make_key(world, monthly_limit=Decimal(1))
    member_limit_set(grant=world.grant, user=world.alice, monthly_limit=Decimal(2), changed_by=None)

    def requests(way: str):
        hold = place(way, key, world.chat_model)
        counter.objects.all().delete()
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="apps.usage.steps"):
            settlement = settle(way, key, hold.pk)
        messages = [message.replace(f" {hold.pk}:", " HOLD:") for message in caplog.messages]
        return entry_of(settlement), settlement.status, messages

    outcomes = each_way(key, requests)

    assert outcomes["call"] == outcomes["steps"]
    (entry, status, messages), _ = outcomes["call"]
    assert entry[7] == Decimal("0.00125")
    table = counter._meta.db_table
    assert len(messages) == 1
    assert messages[0].startswith("A counter row is missing, settling hold HOLD: ")
    assert f"UPDATE {table} SET" in messages[0]
    assert status.key_total.used == Decimal("0.00125")
    assert (status.key_monthly.used, status.member_monthly.used) == (
        (0, Decimal("0.00125")) if counter is KeyMonthCounter else (Decimal("0.00125"), 0)
    )


def test_it_holds_and_settles_in_one_statement_each(world, monkeypatch):
    key = make_key(world)
    statements = []
    execute, call = AsyncCursor.execute, prepared.call

    async def counted(cursor, query, params=None, **options):
        statements.append(query)
        return await execute(cursor, query, params, **options)

    async def called(conn, statement, params):
        statements.append(statement.name)
        return await call(conn, statement, params)

    async def request():
        hold = await ahold_place(
            api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id,
            catalog_model=world.chat_model, prompt_tokens=10, max_completion_tokens=10,
        )  # fmt: skip
        placed = list(statements)
        await ahold_settle(
            hold_id=hold.pk, api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id,
            prompt_tokens=10, completion_tokens=10, outcome=Outcome.OK, latency_ms=1,
            estimated=False,
        )  # fmt: skip
        return placed, statements[len(placed) :]

    async def requests():
        await request()  # opens the pool, whose connections create the functions
        statements.clear()
        return await request()

    monkeypatch.setattr(AsyncCursor, "execute", counted)
    monkeypatch.setattr(prepared, "call", called)
    assert asyncio.run(requests()) == (["anvil_hold_reserve"], ["anvil_hold_settle"])
    assert LedgerEntry.objects.count() == 2


@pytest.mark.parametrize("durable", [False, True])
def test_a_hold_commits_without_waiting_for_the_disk_unless_durable_holds(world, durable):
    # GATEWAY_DURABLE_HOLDS off: the hold's own transaction commits asynchronously; whatever
    # runs after it on the connection (the settlement) is back to the server's setting.
    from django.db import transaction

    from apps.usage import sql, steps
    from apps.usage.services import hold_fields

    key = make_key(world)
    owner = {"api_key_id": key.pk, "grant_id": key.grant_id, "user_id": key.owner_id}
    request = {"prompt_tokens": 10, "max_completion_tokens": 10, "ttl_seconds": 60}
    hold = steps.HoldDraft(**hold_fields(**owner, **request, catalog_model=world.chat_model))
    hold.amount = Decimal("0.001")
    call = next(steps.reserve_by_call(hold, hold.amount))
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        server_setting = cursor.fetchone()[0]
        cursor.execute(sql.functions(durable_holds=durable))
        with transaction.atomic():
            cursor.execute(call.statement, call.params)
            assert cursor.fetchone()[0] > 0  # the hold's id
            cursor.execute("SHOW synchronous_commit")
            during = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        after = cursor.fetchone()[0]
        cursor.execute(
            "DROP FUNCTION pg_temp.anvil_hold_reserve; DROP FUNCTION pg_temp.anvil_hold_settle"
        )
    assert server_setting == "on"
    assert during == ("on" if durable else "off")
    assert after == "on"
    assert Hold.objects.get().amount == Decimal("0.001")


def test_a_hold_reports_the_budgets_its_settlement_will_leave(world):
    """The credit headers of a non-streaming answer come from the hold, before the settlement
    runs (relay.settle_after_answer): the budgets the hold reads are those of the database
    right after it, and moved by the charge they are what the settlement itself reports."""
    member_limit_set(
        grant=world.grant, user=world.alice, monthly_limit=Decimal("0.05"), changed_by=None
    )
    key = make_key(world, total_limit=Decimal("0.04"), monthly_limit=Decimal("0.03"))
    other = place("call", key, world.chat_model, max_completion_tokens=100)  # still open
    for limit_changes, usage in [
        ({}, {"completion_tokens": 500}),
        ({}, {"prompt_tokens": 1200, "completion_tokens": 3000}),  # capped at the hold
        ({"monthly_limit": Decimal("0.0065")}, {"completion_tokens": 0}),  # key month binds
    ]:
        if limit_changes:
            ApiKey.objects.filter(pk=key.pk).update(**limit_changes)
        hold = place("call", key, world.chat_model)
        ids = {"api_key_id": key.pk, "grant_id": key.grant_id, "user_id": key.owner_id}
        assert hold.status == budget_status(**ids, period=hold.period)
        cost = credits_for(
            prompt_tokens=usage.get("prompt_tokens", 1000),
            completion_tokens=usage["completion_tokens"],
            prompt_price=hold.prompt_price,
            completion_price=hold.completion_price,
        )
        charge = min(cost, hold.amount)
        foretold = settled_status(hold.status, amount=hold.amount, charge=charge)
        settlement = settle("call", key, hold.pk, **usage)
        assert settlement.entry.credits == charge
        assert foretold == settlement.status
        assert (foretold.remaining, foretold.limited_by) == (
            settlement.status.remaining,
            settlement.status.limited_by,
        )
    settle("call", key, other.pk)
