from __future__ import annotations

from decimal import Decimal

import pytest

from apps.grants.models import Grant
from apps.keys.models import ApiKey
from apps.usage.models import KeyMonthCounter, MemberMonthCounter
from apps.usage.periods import period_for
from apps.usage.reconcile import Mismatch, counters_reconcile
from apps.usage.tests.conftest import make_key, place, spend

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy(world):
    """Alice and Bob spent with two keys; one of Bob's requests is still in flight."""
    alices, bobs = make_key(world), make_key(world, owner=world.bob)
    spend(alices, world, completion_tokens=500), spend(alices, world, completion_tokens=0)
    spend(bobs, world, completion_tokens=1000)
    place(bobs, world)
    return alices, bobs


def test_it_finds_counters_equal_to_the_ledger(world, busy):
    assert counters_reconcile() == []
    assert counters_reconcile(grant_id=world.grant.pk) == []


def test_it_reports_a_counter_that_differs_from_the_ledger(world, busy):
    Grant.objects.filter(pk=world.grant.pk).update(credits_used=Decimal(7))
    assert counters_reconcile() == [
        Mismatch("grant", (world.grant.pk,), "used", Decimal(7), Decimal("0.00375"))
    ]


def test_it_reports_a_wrong_held_counter_and_a_missing_month_row(world, busy):
    alices, bobs = busy
    ApiKey.objects.filter(pk=bobs.pk).update(credits_held=0)
    KeyMonthCounter.objects.filter(api_key=alices).delete()
    found = {(m.counter, m.field): m for m in counters_reconcile(grant_id=world.grant.pk)}
    assert set(found) == {("key_total", "held"), ("key_monthly", "used")}
    assert found["key_total", "held"].expected == Decimal("0.002")
    assert found["key_monthly", "used"].owner == (alices.pk, period_for())
    assert found["key_monthly", "used"].recorded == 0


def test_it_repairs_counters_from_the_ledger(world, busy):
    alices, _bobs = busy
    Grant.objects.filter(pk=world.grant.pk).update(credits_used=0, credits_held=Decimal(3))
    KeyMonthCounter.objects.filter(api_key=alices).delete()
    MemberMonthCounter.objects.filter(user=world.bob).update(used=Decimal(9))
    assert len(counters_reconcile(repair=True)) == 4
    assert counters_reconcile() == []
    grant = Grant.objects.get(pk=world.grant.pk)
    assert (grant.credits_used, grant.credits_held) == (Decimal("0.00375"), Decimal("0.002"))
    assert KeyMonthCounter.objects.get(api_key=alices).used == Decimal("0.00175")


def test_it_looks_only_at_the_grant_asked_about(world, busy):
    Grant.objects.filter(pk=world.grant.pk).update(credits_used=Decimal(7))
    assert counters_reconcile(grant_id=world.grant.pk + 1) == []
