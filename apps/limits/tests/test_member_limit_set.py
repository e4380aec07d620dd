from __future__ import annotations

from decimal import Decimal

import pytest

from apps.core.exceptions import ApplicationError
from apps.limits.models import MemberLimit
from apps.limits.services import member_limit_set
from apps.usage.selectors import budget_status
from apps.usage.tests.conftest import make_key

pytestmark = pytest.mark.django_db


def test_it_sets_and_changes_a_members_monthly_limit(world):
    member_limit_set(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("5"), changed_by=world.alice
    )
    member_limit_set(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("2.5"), changed_by=world.alice
    )
    limit = MemberLimit.objects.get(grant=world.grant, user=world.bob)
    assert (limit.monthly_limit, limit.changed_by) == (Decimal("2.5"), world.alice)
    key = make_key(world, owner=world.bob)
    state = budget_status(api_key_id=key.pk, grant_id=world.grant.pk, user_id=world.bob.pk)
    assert state.member_monthly.limit == Decimal("2.5")


def test_it_lifts_a_limit_with_none(world):
    member_limit_set(grant=world.grant, user=world.bob, monthly_limit=Decimal(1), changed_by=None)
    member_limit_set(grant=world.grant, user=world.bob, monthly_limit=None, changed_by=None)
    assert MemberLimit.objects.get(user=world.bob).monthly_limit is None


def test_it_refuses_people_outside_the_grants_team(world):
    with pytest.raises(ApplicationError, match="not a member"):
        member_limit_set(
            grant=world.grant, user=world.charlie, monthly_limit=Decimal(1), changed_by=None
        )
    assert not MemberLimit.objects.exists()


@pytest.mark.parametrize("bad", [Decimal("-1"), Decimal("0.0000001")])
def test_it_refuses_a_limit_credits_cannot_express(world, bad):
    with pytest.raises(ApplicationError) as refused:
        member_limit_set(grant=world.grant, user=world.bob, monthly_limit=bad, changed_by=None)
    assert refused.value.param == "monthly_limit"
    assert not MemberLimit.objects.exclude(monthly_limit=None).exists()
