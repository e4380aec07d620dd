from __future__ import annotations

from decimal import Decimal

import pytest

from apps.catalog.models import CatalogModel
from apps.core.exceptions import NotFound
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.limits.services import member_limit_set
from apps.usage import ledger
from apps.usage.exceptions import QuotaExceeded
from apps.usage.models import Hold, KeyMonthCounter, MemberMonthCounter
from apps.usage.periods import period_for
from apps.usage.selectors import budget_status
from apps.usage.tests.conftest import REQUEST_COST, make_key, place

pytestmark = pytest.mark.django_db

LITTLE = Decimal("0.0015")  # less than one request costs (REQUEST_COST = 0.002)


def squeeze(world, budget: str, left: Decimal) -> ApiKey:
    """A key of Alice's whose ``budget`` has exactly ``left`` credits left."""
    if budget == "grant":
        Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=left)
        return make_key(world)
    if budget == "key_total":
        return make_key(world, total_limit=left)
    if budget == "key_monthly":
        return make_key(world, monthly_limit=left)
    member_limit_set(grant=world.grant, user=world.alice, monthly_limit=left, changed_by=None)
    return make_key(world)


def status(key):
    return budget_status(api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id)


MESSAGES = {
    "grant": "The grant's credits are used up (0.0015 credits left).",
    "key_total": "The key's total credit limit is reached (0.0015 credits left).",
    "key_monthly": "The key's monthly credit limit is reached (0.0015 credits left).",
    "member_monthly": "Your monthly credit limit in this grant is reached (0.0015 credits left).",
}


@pytest.mark.parametrize("budget", ["grant", "key_total", "key_monthly", "member_monthly"])
def test_it_refuses_with_the_name_of_the_exhausted_budget(world, budget):
    key = squeeze(world, budget, LITTLE)
    with pytest.raises(QuotaExceeded) as refused:
        place(key, world)
    assert refused.value.limit == budget
    assert refused.value.remaining == LITTLE
    assert refused.value.message == MESSAGES[budget]
    assert (refused.value.status, refused.value.code) == (429, "insufficient_quota")
    # A refused request changes no counter.
    assert not Hold.objects.exists()
    assert Grant.objects.get(pk=world.grant.pk).credits_held == 0
    assert ApiKey.objects.get(pk=key.pk).credits_held == 0
    assert not KeyMonthCounter.objects.exclude(held=0).exists()
    assert not MemberMonthCounter.objects.exclude(held=0).exists()


@pytest.mark.parametrize("budget", ["grant", "key_total", "key_monthly", "member_monthly"])
def test_it_reports_the_binding_budget(world, budget):
    key = squeeze(world, budget, Decimal("0.5"))
    place(key, world)  # holds 0.002 against all four budgets
    state = status(key)
    assert state.limited_by == budget
    assert state.remaining == Decimal("0.498")
    assert state.budget(budget).limit == Decimal("0.5")
    assert state.budget(budget).held == REQUEST_COST


def test_it_reports_no_limit_for_unlimited_budgets(world, key):
    state = status(key)
    assert (state.limited_by, state.remaining) == ("grant", Decimal(1000))
    assert state.key_total.limit is None and state.key_total.left is None
    assert state.key_monthly.left is None and state.member_monthly.left is None


def test_it_names_the_budget_with_the_least_left_when_several_refuse(world):
    Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=Decimal("0.0012"))
    member_limit_set(
        grant=world.grant, user=world.alice, monthly_limit=Decimal("0.0004"), changed_by=None
    )
    key = make_key(world, total_limit=Decimal("0.001"), monthly_limit=Decimal("0.0019"))
    with pytest.raises(QuotaExceeded) as refused:
        place(key, world)
    assert (refused.value.limit, refused.value.remaining) == ("member_monthly", Decimal("0.0004"))


def test_it_counts_holds_in_flight_against_the_budget(world):
    key = make_key(world, total_limit=Decimal("0.005"))
    place(key, world), place(key, world)
    with pytest.raises(QuotaExceeded) as refused:
        place(key, world)
    assert (refused.value.limit, refused.value.remaining) == ("key_total", Decimal("0.001"))


def test_it_lowers_max_completion_tokens_to_what_the_budget_affords(world):
    key = make_key(world, monthly_limit=Decimal("0.0015"))
    hold = place(key, world, prompt_tokens=1000, max_completion_tokens=1000, allow_partial=True)
    # 0.0015 - 1000 * 0.5 / 1M leaves 0.001 credits: 666 tokens at 1.5 per 1M.
    assert hold.max_completion_tokens == 666
    assert hold.amount == Decimal("0.001499")
    assert Hold.objects.get(pk=hold.pk).max_completion_tokens == 666
    assert status(key).key_monthly.held == Decimal("0.001499")


def test_it_does_not_lower_what_fits(world, key):
    hold = place(key, world, max_completion_tokens=1000, allow_partial=True)
    assert (hold.max_completion_tokens, hold.amount) == (1000, REQUEST_COST)


def test_it_refuses_a_partial_hold_that_cannot_pay_one_completion_token(world):
    key = make_key(world, total_limit=Decimal("0.0005"))  # exactly the prompt's price
    with pytest.raises(QuotaExceeded) as refused:
        place(key, world, prompt_tokens=1000, max_completion_tokens=1000, allow_partial=True)
    assert refused.value.limit == "key_total"


def test_it_refuses_free_requests_once_a_budget_is_used_up(world):
    free = CatalogModel.objects.create(
        name="free", backend=world.backend, upstream_model="free", prompt_price=Decimal(0),
        completion_price=Decimal(0), context_window=100,
    )  # fmt: skip
    key = make_key(world, total_limit=Decimal(0))
    with pytest.raises(QuotaExceeded):
        place(key, world, model=free, prompt_tokens=5, max_completion_tokens=5)
    hold = place(make_key(world), world, model=free, prompt_tokens=5, max_completion_tokens=5)
    assert hold.amount == 0


def test_it_starts_every_month_with_fresh_monthly_counters(world):
    key = make_key(world, monthly_limit=Decimal("0.003"))
    member_limit_set(
        grant=world.grant, user=world.alice, monthly_limit=Decimal("0.003"), changed_by=None
    )
    KeyMonthCounter.objects.create(api_key=key, period="2020-01", used=Decimal("0.003"))
    MemberMonthCounter.objects.create(
        grant=world.grant, user=world.alice, period="2020-01", used=Decimal("0.003")
    )
    hold = place(key, world)
    assert hold.period == period_for()
    assert status(key).key_monthly.held == REQUEST_COST


def test_it_reads_a_changed_limit_from_the_database(world):
    key = make_key(world, monthly_limit=Decimal("1"))
    place(key, world)
    ApiKey.objects.filter(pk=key.pk).update(monthly_limit=Decimal("0.003"))
    with pytest.raises(QuotaExceeded) as refused:
        place(key, world)  # the key object in memory still says 1
    assert refused.value.limit == "key_monthly"


def test_it_refuses_a_key_of_another_grant(world, key):
    plan = ledger.Plan(
        api_key_id=key.pk, grant_id=world.grant.pk + 1000, user_id=world.alice.pk,
        model=world.chat_model, prompt_tokens=1, max_completion_tokens=1,
    )  # fmt: skip
    with pytest.raises(NotFound):
        ledger.place(plan)
    assert not Hold.objects.exists()


@pytest.mark.parametrize("ttl_seconds", [0, -1, True, 1.5])
def test_it_needs_a_positive_whole_number_of_seconds_to_live(world, key, ttl_seconds):
    with pytest.raises(ValueError, match="ttl_seconds"):
        place(key, world, ttl_seconds=ttl_seconds)
    assert not Hold.objects.exists()


def test_it_names_the_grant_first_when_budgets_tie(world):
    Grant.objects.filter(pk=world.grant.pk).update(credits_allocated=Decimal("0.001"))
    key = make_key(world, total_limit=Decimal("0.001"))
    with pytest.raises(QuotaExceeded) as refused:
        place(key, world)
    assert refused.value.limit == "grant"
