"""My usage: the signed-in person's own consumption and limits across their grants."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.limits.services import member_limit_change
from apps.usage.models import MemberMonthCounter
from apps.usage.periods import period_for
from tests.spending import make_key, spend
from tests.tables import csv_rows, html_table

pytestmark = pytest.mark.django_db


def test_it_shows_the_members_limit_and_what_is_left(client, world):
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("10"), changed_by=world.alice
    )
    MemberMonthCounter.objects.create(
        grant=world.grant, user=world.bob, period=period_for(), used=Decimal("2.5"), held=0
    )
    client.force_login(world.bob)
    response = client.get(reverse("consumption:mine"))
    assert response.status_code == 200
    assert html_table(response.content, "limits")[1] == ["alice-grant", "2.5", "0", "10", "7.5"]


def test_it_shows_no_limit_where_none_is_set(client, world):
    client.force_login(world.alice)
    response = client.get(reverse("consumption:mine"))
    row = html_table(response.content, "limits")[1]
    assert row == ["alice-grant", "0", "0", "no limit", "no limit"]


def test_it_shows_an_outsider_nothing_of_others(client, world):
    client.force_login(world.charlie)
    response = client.get(reverse("consumption:mine"))
    assert response.status_code == 200
    assert b"alice-grant" not in response.content


def test_it_downloads_each_table_as_the_page_shows_it(client, world):
    client.force_login(world.bob)
    page = client.get(reverse("consumption:mine"))
    response = client.get(reverse("consumption:mine"), {"format": "csv", "table": "limits"})
    assert response["Content-Disposition"].startswith("attachment;")
    assert csv_rows(response.content) == html_table(page.content, "limits")


@pytest.mark.parametrize("period", ["2026-13", "26-01", "x"])
def test_it_answers_a_malformed_period_with_404(client, world, period):
    client.force_login(world.bob)
    assert client.get(reverse("consumption:mine"), {"period": period}).status_code == 404


def test_it_sends_anonymous_visitors_to_sign_in(client, world):
    response = client.get(reverse("consumption:mine"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_it_shows_the_persons_consumption_per_grant_and_key(client, world):
    bob_key = make_key(world, owner=world.bob, name="bob-key")
    spend(world, key=bob_key, credits=Decimal("0.5"))
    spend(world, key=bob_key, credits=Decimal("0.000002"))
    spend(world, key=make_key(world, owner=world.alice, name="alice-key"), credits=Decimal(9))
    client.force_login(world.bob)
    response = client.get(reverse("consumption:mine"))
    assert html_table(response.content, "keys")[1:] == [
        ["alice-grant / bob-key", "2", "20", "10", "0.500002"]
    ]
    assert b'data-testid="total-credits">0.5<' in response.content
    csv = client.get(reverse("consumption:mine"), {"format": "csv", "table": "keys"})
    assert csv_rows(csv.content) == html_table(response.content, "keys")
