"""The key page: the four limits with what is left under each, downloadable as CSV."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.keys.services import api_key_create
from apps.limits.services import member_limit_change, member_limits_change_all
from apps.usage.models import KeyMonthCounter, MemberMonthCounter
from apps.usage.periods import period_for
from tests.spending import make_key, spend
from tests.tables import csv_rows, html_table

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_key(world):
    key, _ = api_key_create(
        grant=world.grant,
        owner=world.bob,
        name="bob-key",
        monthly_limit=Decimal("20"),
        total_limit=Decimal("50"),
    )
    return key


def url(key) -> str:
    return reverse("consumption:api_key", args=[key.public_id])


def limits(client, key) -> dict[str, list[str]]:
    rows = html_table(client.get(url(key)).content, "limits")
    return {row[0]: row[1:] for row in rows[1:]}


def test_it_shows_the_four_limits_and_what_is_left(client, world, bob_key):
    period = period_for()
    KeyMonthCounter.objects.create(api_key=bob_key, period=period, used=Decimal("4"), held=1)
    MemberMonthCounter.objects.create(grant=world.grant, user=world.bob, period=period, used=6)
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("8"), changed_by=world.alice
    )
    client.force_login(world.bob)
    assert limits(client, bob_key) == {
        "Grant credits": ["1,000", "0", "0", "1,000"],  # thousands separated on the page
        "Key total limit": ["50", "0", "0", "50"],
        "Key monthly limit": ["20", "4", "1", "15"],
        "Member monthly limit (all of the owner's keys in the grant)": ["8", "6", "0", "2"],
    }
    page = client.get(url(bob_key)).content.decode()
    assert "Member monthly limit" in page.split('data-testid="limited-by">')[1].split("<")[0]


def test_it_shows_the_latest_member_limit_whichever_way_it_was_set(client, world, bob_key):
    client.force_login(world.bob)
    member = "Member monthly limit (all of the owner's keys in the grant)"
    assert limits(client, bob_key)[member] == ["no limit", "0", "0", "no limit"]
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("9"), changed_by=world.alice
    )
    assert limits(client, bob_key)[member][0] == "9"
    member_limits_change_all(grant=world.grant, monthly_limit=Decimal("3"), changed_by=world.alice)
    assert limits(client, bob_key)[member][0] == "3"


def test_it_downloads_the_limits_as_the_page_shows_them(client, world, bob_key):
    """The same cells, exact and without the page's thousands separators."""
    client.force_login(world.bob)
    page = client.get(url(bob_key))
    response = client.get(url(bob_key), {"format": "csv", "table": "limits"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="key-bob-key-limits.csv"'
    shown = [[cell.replace(",", "") for cell in row] for row in html_table(page.content, "limits")]
    assert csv_rows(response.content) == shown
    assert html_table(page.content, "limits")[1][1] == "1,000"


@pytest.mark.parametrize("username", ["alice", "charlie"])
def test_it_hides_the_key_and_its_csv_from_anyone_else(client, world, bob_key, username):
    client.force_login(getattr(world, username))
    assert client.get(url(bob_key)).status_code == 404
    assert client.get(url(bob_key), {"format": "csv", "table": "limits"}).status_code == 404


def test_it_shows_the_keys_consumption_over_time_and_by_model(client, world, bob_key):
    other = make_key(world, owner=world.bob, name="other-key")
    spend(world, key=bob_key, credits=Decimal("0.25"))
    spend(world, key=bob_key, credits=Decimal("0.000001"), model=world.embed_model)
    spend(world, key=other, credits=Decimal("7"))  # another key of Bob's: not on this page
    client.force_login(world.bob)
    body = client.get(url(bob_key)).content
    assert html_table(body, "models")[1:] == [
        ["chat-small", "1", "10", "5", "0.25"],
        ["embed-small", "1", "10", "5", "0.000001"],
    ]
    assert html_table(body, "monthly")[1:] == [[period_for(), "2", "20", "10", "0.250001"]]
    assert html_table(body, "daily")[-1][-1] == "0.250001"
    for name in ("daily", "monthly", "models"):
        response = client.get(url(bob_key), {"format": "csv", "table": name})
        assert csv_rows(response.content) == html_table(body, name)
