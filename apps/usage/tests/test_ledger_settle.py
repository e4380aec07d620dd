from __future__ import annotations

from decimal import Decimal

import pytest

from apps.catalog.models import CatalogModel
from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.limits.services import member_limit_set
from apps.usage.models import (
    Hold,
    KeyMonthCounter,
    LedgerEntry,
    MemberMonthCounter,
    Outcome,
)
from apps.usage.periods import period_for
from apps.usage.tests.conftest import REQUEST_COST, make_key, place
from apps.usage.tests.conftest import settle as settle_tokens

pytestmark = pytest.mark.django_db


def counters(key) -> dict[str, tuple[Decimal, Decimal]]:
    """(used, held) of the four counters a request by ``key`` touches this month."""
    grant = Grant.objects.get(pk=key.grant_id)
    key = ApiKey.objects.get(pk=key.pk)
    month = KeyMonthCounter.objects.get(api_key=key, period=period_for())
    member = MemberMonthCounter.objects.get(grant=grant, user=key.owner, period=period_for())
    return {
        "grant": (grant.credits_used, grant.credits_held),
        "key_total": (key.credits_used, key.credits_held),
        "key_monthly": (month.used, month.held),
        "member_monthly": (member.used, member.held),
    }


def settle(hold, prompt_tokens=1000, completion_tokens=500, outcome=Outcome.OK, **usage):
    return settle_tokens(hold, prompt_tokens, completion_tokens, outcome, **usage)


def test_it_holds_the_largest_cost_on_all_four_counters(world):
    key = make_key(world, total_limit=Decimal(10), monthly_limit=Decimal(5))
    member_limit_set(grant=world.grant, user=world.alice, monthly_limit=Decimal(1), changed_by=None)
    hold = place(key, world, prompt_tokens=1000, max_completion_tokens=1000)
    assert hold.amount == REQUEST_COST
    assert hold.max_completion_tokens == 1000
    assert set(counters(key).values()) == {(Decimal(0), REQUEST_COST)}
    stored = Hold.objects.get(pk=hold.pk)
    assert (stored.prompt_price, stored.completion_price) == (Decimal("0.5"), Decimal("1.5"))
    assert stored.period == period_for()
    assert stored.expires_at > stored.created


def test_it_moves_held_to_used_on_all_four_counters_when_settled(world, key):
    hold = place(key, world)
    entry = settle(hold, prompt_tokens=1000, completion_tokens=500, latency_ms=321)
    # 1000 * 0.5 / 1M + 500 * 1.5 / 1M
    assert entry.credits == Decimal("0.00125")
    assert set(counters(key).values()) == {(Decimal("0.00125"), Decimal(0))}
    assert not Hold.objects.filter(pk=hold.pk).exists()
    stored = LedgerEntry.objects.get()
    assert stored.credits == Decimal("0.00125")
    assert (stored.api_key_id, stored.user_id, stored.grant_id) == (
        key.pk,
        world.alice.pk,
        world.grant.pk,
    )
    assert stored.model_id == world.chat_model.pk
    assert (stored.prompt_tokens, stored.completion_tokens) == (1000, 500)
    assert (stored.outcome, stored.latency_ms, stored.estimated, stored.capped) == (
        "ok",
        321,
        False,
        False,
    )
    assert stored.period == period_for()


def test_it_charges_the_exact_price_of_separate_prompt_and_completion_prices(world, key):
    model = CatalogModel.objects.create(
        name="llama-70b",
        backend=world.backend,
        upstream_model="meta/llama-70b",
        prompt_price=Decimal("19.78"),
        completion_price=Decimal("167.66"),
        context_window=8192,
    )
    hold = place(key, world, model=model, prompt_tokens=18, max_completion_tokens=100)
    entry = settle(hold, prompt_tokens=18, completion_tokens=16)
    assert LedgerEntry.objects.get(pk=entry.pk).credits == Decimal("0.003039")
    assert Grant.objects.get(pk=world.grant.pk).credits_used == Decimal("0.003039")


def test_it_charges_nothing_for_a_failure_before_the_first_token(world, key):
    hold = place(key, world)
    entry = settle(hold, prompt_tokens=0, completion_tokens=0, outcome=Outcome.BACKEND_ERROR)
    assert entry.credits == 0
    assert set(counters(key).values()) == {(Decimal(0), Decimal(0))}
    assert LedgerEntry.objects.get().outcome == Outcome.BACKEND_ERROR


def test_it_bills_a_client_disconnect_for_what_was_generated(world, key):
    hold = place(key, world)
    entry = settle(hold, completion_tokens=200, outcome=Outcome.CLIENT_DISCONNECTED, estimated=True)
    assert entry.credits == Decimal("0.0008")
    assert (entry.outcome, entry.estimated) == ("client_disconnected", True)


def test_it_never_charges_more_than_the_hold(world, key):
    hold = place(key, world, prompt_tokens=1000, max_completion_tokens=1000)
    entry = settle(hold, prompt_tokens=1200, completion_tokens=3000)
    assert entry.credits == REQUEST_COST
    assert entry.capped is True
    assert (entry.prompt_tokens, entry.completion_tokens) == (1200, 3000)
    assert set(counters(key).values()) == {(REQUEST_COST, Decimal(0))}


def test_it_settles_a_hold_only_once(world, key):
    hold = place(key, world)
    assert settle(hold) is not None
    assert settle(hold, completion_tokens=900) is None
    assert LedgerEntry.objects.count() == 1
    assert set(counters(key).values()) == {(Decimal("0.00125"), Decimal(0))}


def test_it_refuses_an_unknown_outcome_without_settling(world, key):
    hold = place(key, world)
    with pytest.raises(ValueError, match="outcome"):
        settle(hold, outcome="fine")
    with pytest.raises(ValueError, match="completion_tokens"):
        settle(hold, completion_tokens=-1)
    assert Hold.objects.filter(pk=hold.pk).exists()


def test_it_keeps_holds_of_several_requests_apart(world, key):
    first, second = place(key, world), place(key, world)
    settle(first, completion_tokens=0)
    assert counters(key)["grant"] == (Decimal("0.0005"), REQUEST_COST)
    settle(second, completion_tokens=1000)
    assert counters(key)["grant"] == (Decimal("0.0025"), Decimal(0))


def test_what_an_open_hold_names_can_not_be_deleted(world):
    """The hold table has no foreign-key constraints in the database (they cost the gateway's
    hold about 0.2 ms); Django's PROTECT still refuses to delete what a request in flight
    names."""
    from django.db.models import ProtectedError

    key = make_key(world)
    hold = place(key, world)
    for row in (key, world.chat_model, world.grant):
        with pytest.raises(ProtectedError):
            row.delete()
    settle(hold)
    assert not Hold.objects.exists()
