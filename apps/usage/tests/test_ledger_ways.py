"""The ledger's two ways — ``place``/``settle``/``withdraw`` step by step through the ORM, and
``aplace``/``asettle``/``awithdraw`` calling PostgreSQL's functions (migration usage 0005) from
the event loop — from the same start give the same holds, refusals, ledger rows and counters."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from apps.catalog.models import CatalogModel
from apps.core.exceptions import NotFound
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.limits.services import member_limit_set
from apps.usage import ledger
from apps.usage.credits import credits_for
from apps.usage.exceptions import QuotaExceeded
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter, Outcome
from apps.usage.reconcile import counters_reconcile
from apps.usage.selectors import budget_status
from apps.usage.tests.conftest import WAYS, make_key, plan_for

pytestmark = pytest.mark.django_db(transaction=True)

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="elsewhere the async way is the sync way in a thread"
)
LEDGER_COLUMNS = (
    "api_key_id", "user_id", "grant_id", "model_id", "period", "prompt_tokens",
    "completion_tokens", "credits", "outcome", "latency_ms", "estimated", "capped",
)  # fmt: skip
HOLD_COLUMNS = (
    "amount", "prompt_tokens", "max_completion_tokens", "prompt_price", "completion_price",
    "period",
)  # fmt: skip


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
        outcomes[way.name] = (requests(way), accounts(key))
    return outcomes


def entry_of(entry: LedgerEntry | None) -> tuple | None:
    return None if entry is None else tuple(getattr(entry, column) for column in LEDGER_COLUMNS)


def status_of(key: ApiKey):
    return budget_status(api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id)


@on_postgresql
def test_it_holds_charges_and_refuses_alike_both_ways(world):
    member_limit_set(
        grant=world.grant, user=world.alice, monthly_limit=Decimal("0.006"), changed_by=None
    )
    key = make_key(world, total_limit=Decimal("0.01"), monthly_limit=Decimal("0.008"))

    def requests(way) -> list:
        results = []
        for usage in (
            ledger.Usage(1000, 500, latency_ms=7),
            ledger.Usage(1200, 3000, latency_ms=7),  # more than held: capped
            ledger.Usage.unused(Outcome.BACKEND_ERROR, latency_ms=7),
            ledger.Usage(1000, 7, Outcome.CLIENT_DISCONNECTED, 7, estimated=True),
        ):
            hold = way.place(plan_for(key, world))
            entry = way.settle(hold, usage)
            results.append((hold.amount, entry_of(entry), status_of(key)))
        with pytest.raises(QuotaExceeded) as refused:  # 0.00125 + 0.002 + 0 + 0.000511 used
            way.place(plan_for(key, world, max_completion_tokens=2000))
        lowered = way.place(plan_for(key, world, max_completion_tokens=2000, allow_partial=True))
        entry = way.settle(lowered, ledger.Usage(1000, 2000, latency_ms=7))
        again = way.settle(lowered, ledger.Usage(1000, 500))
        return [
            *results, (refused.value.limit, refused.value.remaining),
            (lowered.max_completion_tokens, lowered.amount),
            (entry_of(entry), status_of(key)), again,
        ]  # fmt: skip

    outcomes = each_way(key, requests)

    assert outcomes["async"] == outcomes["sync"]
    results, books = outcomes["async"]
    assert results[4] == ("member_monthly", Decimal("0.002239"))  # 0.006 - 0.003761
    assert results[5] == (1159, Decimal("0.002239"))  # 0.0005 + 1159 * 0.0000015
    assert results[7] is None  # settled once
    assert [row[-1] for row in books["ledger"]] == [False, True, False, False, True]
    assert books["member months"] == [(world.alice.pk, Decimal("0.006"), Decimal(0))]
    assert books["holds"] == []


@on_postgresql
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
def test_it_rounds_the_charge_like_credits_for_both_ways(
    world, prompt_price, completion_price, prompt_tokens, completion_tokens
):
    model = CatalogModel.objects.create(
        name="priced", backend=world.backend, upstream_model="priced", context_window=10**9,
        prompt_price=Decimal(prompt_price), completion_price=Decimal(completion_price),
    )  # fmt: skip
    Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=Decimal(10**12))
    key = make_key(world)
    plan = plan_for(key, world, model=model, prompt_tokens=prompt_tokens,
                    max_completion_tokens=10**6)  # fmt: skip

    def requests(way):
        hold = way.place(plan)
        return hold.amount, entry_of(
            way.settle(hold, ledger.Usage(prompt_tokens, completion_tokens))
        )

    outcomes = each_way(key, requests)

    assert outcomes["async"] == outcomes["sync"]
    (_, entry), books = outcomes["async"]
    prices = {"prompt_price": model.prompt_price, "completion_price": model.completion_price}
    tokens = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    assert entry[7] == credits_for(**tokens, **prices)
    assert books["grant"] == (entry[7], 0)


LITTLE = Decimal("0.0015")  # less than one request costs (0.002)


@on_postgresql
@pytest.mark.parametrize("budget", ["grant", "key_total", "key_monthly", "member_monthly"])
def test_it_refuses_naming_each_budget_alike_both_ways(world, budget):
    if budget == "grant":
        Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=LITTLE)
    if budget == "member_monthly":
        member_limit_set(grant=world.grant, user=world.alice, monthly_limit=LITTLE, changed_by=None)
    limits = {"key_total": {"total_limit": LITTLE}, "key_monthly": {"monthly_limit": LITTLE}}
    key = make_key(world, **limits.get(budget, {}))

    def requests(way):
        with pytest.raises(QuotaExceeded) as refused:
            way.place(plan_for(key, world))
        return refused.value.limit, refused.value.remaining, refused.value.message

    outcomes = each_way(key, requests)

    assert outcomes["async"] == outcomes["sync"]
    (limit, remaining, _message), books = outcomes["async"]
    assert (limit, remaining) == (budget, LITTLE)
    # Rolled back whole: no hold, nothing held, not even the month counter rows it inserted.
    assert books["grant"] == books["key"] == (0, 0)
    assert books["holds"] == books["ledger"] == []
    assert all(held == 0 for *_, held in books["key months"] + books["member months"])


def test_it_refuses_a_key_of_another_grant_both_ways(world, way):
    key = make_key(world)
    other = Grant.objects.create(
        team=world.team, identifier="other-grant", credits_allocated=Decimal(1),
        valid_from=world.grant.valid_from, valid_until=world.grant.valid_until,
    )  # fmt: skip
    plan = ledger.Plan(
        api_key_id=key.pk, grant_id=other.pk, user_id=key.owner_id, model=world.chat_model,
        prompt_tokens=10, max_completion_tokens=10,
    )  # fmt: skip

    with pytest.raises(NotFound, match="does not belong to this grant"):
        way.place(plan)
    assert not Hold.objects.exists()
    assert Grant.objects.get(pk=other.pk).credits_held == 0


@on_postgresql
@pytest.mark.parametrize("counter", [KeyMonthCounter, MemberMonthCounter])
def test_it_settles_alike_without_a_month_counter_row_and_reconcile_mends_it(world, counter):
    """A month counter row deleted under an open hold (by hand): the settlement still charges
    the other three budgets and writes its row, both ways; the nightly reconcile reports the
    missing row (``tasks.reconcile_counters`` logs it as a warning) and repairs it."""
    key = make_key(world, monthly_limit=Decimal(1))
    member_limit_set(grant=world.grant, user=world.alice, monthly_limit=Decimal(2), changed_by=None)

    def requests(way):
        hold = way.place(plan_for(key, world))
        counter.objects.all().delete()
        entry = way.settle(hold, ledger.Usage(1000, 500))
        return entry_of(entry), status_of(key)

    outcomes = each_way(key, requests)

    assert outcomes["async"] == outcomes["sync"]
    (entry, status), _ = outcomes["async"]
    assert entry[7] == Decimal("0.00125")
    assert status.key_total.used == Decimal("0.00125")
    assert (status.key_monthly.used, status.member_monthly.used) == (
        (0, Decimal("0.00125")) if counter is KeyMonthCounter else (Decimal("0.00125"), 0)
    )
    missing = "key_monthly" if counter is KeyMonthCounter else "member_monthly"
    assert {(m.counter, m.field) for m in counters_reconcile(repair=True)} == {(missing, "used")}
    assert counters_reconcile() == []
