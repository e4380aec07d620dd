"""The grant page's consumption: members (this month, since the grant began, monthly limit),
over time, by model, and the limit history; charts and CSV files with the table's numbers."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.consumption.periods import period_bounds
from apps.limits.services import member_limit_change
from apps.usage.periods import period_for
from tests.spending import make_key, spend
from tests.tables import chart_data, csv_rows, html_table

pytestmark = pytest.mark.django_db

TABLES = ["members", "daily", "monthly", "models", "limit-changes"]


def last_month_noon() -> dt.datetime:
    first = timezone.localdate().replace(day=1)
    return timezone.make_aware(dt.datetime.combine(first - dt.timedelta(days=1), dt.time(12)))


@pytest.fixture
def spent(world):
    """Alice spent 1.5 + 0.000123 this month; Bob 2.25 this month and 4 last month."""
    world.grant.valid_from = timezone.localdate() - dt.timedelta(days=90)
    world.grant.save()
    alice_key = make_key(world, owner=world.alice, name="alice-key")
    bob_key = make_key(world, owner=world.bob, name="bob-key")
    spend(world, key=alice_key, credits=Decimal("1.5"))
    spend(world, key=alice_key, credits=Decimal("0.000123"), model=world.embed_model)
    spend(world, key=bob_key, credits=Decimal("2.25"))
    spend(world, key=bob_key, credits=Decimal("4"), when=last_month_noon())
    member_limit_change(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("12.5"), changed_by=world.alice
    )
    return world


def url(world) -> str:
    return reverse("consumption:grant", args=[world.grant.public_id])


def test_it_shows_the_manager_every_members_consumption_and_limit(client, spent):
    client.force_login(spent.alice)
    response = client.get(url(spent))
    period = period_for()
    assert html_table(response.content, "members") == [
        ["Member", "Role", f"Credits in {period}", "Credits since the grant began",
         "Monthly limit", "Limit"],
        ["alice", "Manager", "1.500123", "1.500123", "no limit", "Change limit"],
        ["bob", "Member", "2.25", "6.25", "12.5", "Change limit"],
    ]  # fmt: skip
    body = response.content.decode()
    change_bob = reverse("limits:member", args=[spent.grant.public_id, spent.bob.public_id])
    assert f'href="{change_bob}"' in body
    assert 'data-testid="set-collective-limit"' in body
    assert 'data-testid="audit-log"' in body


def test_it_shows_a_plain_member_only_their_own_rows(client, spent):
    client.force_login(spent.bob)
    response = client.get(url(spent))
    rows = html_table(response.content, "members")
    assert rows[1:] == [["bob", "Member", "2.25", "6.25", "12.5"]]
    history = html_table(response.content, "limit-changes")
    assert [row[1] for row in history[1:]] == ["bob"]
    body = response.content.decode()
    assert "Change limit" not in body
    assert 'data-testid="set-collective-limit"' not in body
    assert 'data-testid="audit-log"' not in body
    csv = client.get(url(spent), {"format": "csv", "table": "members"})
    assert [row[0] for row in csv_rows(csv.content)[1:]] == ["bob"]


def test_it_hides_the_other_members_history_from_a_plain_member(client, spent):
    member_limit_change(
        grant=spent.grant, user=spent.alice, monthly_limit=Decimal("99"), changed_by=spent.alice
    )
    client.force_login(spent.bob)
    history = html_table(client.get(url(spent)).content, "limit-changes")
    assert "99" not in str(history)
    client.force_login(spent.alice)
    history = html_table(client.get(url(spent)).content, "limit-changes")
    assert [(row[1], row[3], row[4], row[5]) for row in history[1:]] == [
        ("alice", "99", "For this member", "alice"),
        ("bob", "12.5", "For this member", "alice"),
    ]


def test_it_shows_consumption_by_model_and_over_time(client, spent):
    client.force_login(spent.alice)
    response = client.get(url(spent))
    assert html_table(response.content, "models")[1:] == [
        ["chat-small", "2", "20", "10", "3.75"],
        ["embed-small", "1", "10", "5", "0.000123"],
    ]
    monthly = html_table(response.content, "monthly")
    last_month = period_for(last_month_noon())
    assert [row[0] for row in monthly[1:]][-2:] == [last_month, period_for()]
    assert monthly[-2][1:] == ["1", "10", "5", "4"]
    assert monthly[-1][1:] == ["3", "30", "15", "3.750123"]
    daily = html_table(response.content, "daily")
    assert daily[-1] == [timezone.localdate().isoformat(), "3", "30", "15", "3.750123"]
    assert sum(Decimal(row[4]) for row in daily[1:]) == Decimal("3.750123")


@pytest.mark.parametrize("name", TABLES)
def test_it_downloads_every_table_as_the_page_shows_it(client, spent, name):
    client.force_login(spent.alice)
    page = client.get(url(spent))
    response = client.get(url(spent), {"format": "csv", "table": name})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="alice-grant-{name}.csv"'
    table = html_table(page.content, name)
    if name == "members":  # the page's Change limit links are not data
        table = [row[:-1] for row in table]
    assert csv_rows(response.content) == table


def test_it_draws_each_chart_from_the_tables_numbers(client, spent):
    client.force_login(spent.alice)
    body = client.get(url(spent)).content
    for name, columns in {"members": [2, 3], "daily": [4], "monthly": [4], "models": [4]}.items():
        rows = html_table(body, name)
        chart = chart_data(body, name)
        for column, dataset in zip(columns, chart["datasets"], strict=True):
            drawn = dict(zip(chart["labels"], dataset["data"], strict=True))
            assert {row[0]: drawn[row[0]] for row in rows[1:]} == {
                row[0]: row[column] for row in rows[1:]
            }
            # The daily chart spans the whole month; days without a row are gaps.
            assert all(drawn[label] is None for label in set(drawn) - {r[0] for r in rows[1:]})
        if name == "daily":
            first, last = period_bounds(period_for())
            assert (chart["labels"][0], chart["labels"][-1]) == (str(first), str(last))
    assert b'src="/static/vendor/chartjs/chart.umd.min.js"' in body


def test_it_shows_a_chosen_month(client, spent):
    client.force_login(spent.alice)
    last_month = period_for(last_month_noon())
    response = client.get(url(spent), {"period": last_month})
    rows = html_table(response.content, "members")
    assert rows[0][2] == f"Credits in {last_month}"
    assert rows[2][:4] == ["bob", "Member", "4", "6.25"]
    csv = client.get(url(spent), {"period": last_month, "format": "csv", "table": "members"})
    assert csv_rows(csv.content)[2][:4] == ["bob", "Member", "4", "6.25"]


def test_it_answers_an_outsider_with_404_for_the_page_and_every_csv(client, spent):
    client.force_login(spent.charlie)
    assert client.get(url(spent)).status_code == 404
    for name in TABLES:
        assert client.get(url(spent), {"format": "csv", "table": name}).status_code == 404
    missing = reverse("consumption:grant", args=[uuid.uuid4()])
    assert client.get(missing, {"format": "csv", "table": "members"}).status_code == 404


@pytest.mark.parametrize("period", ["2026-00", "May", "2026-1"])
def test_it_answers_a_malformed_period_with_404(client, spent, period):
    client.force_login(spent.alice)
    assert client.get(url(spent), {"period": period}).status_code == 404


def test_an_empty_month_says_so_instead_of_drawing_empty_axes(client, world):
    client.force_login(world.alice)
    body = client.get(reverse("consumption:grant", args=[world.grant.public_id])).content
    page = body.decode()
    month = period_for()
    assert f'data-testid="chart-empty-daily">No requests in {month} yet.</p>' in page
    assert f'data-testid="chart-empty-models">No requests in {month} yet.</p>' in page
    assert "<canvas" not in page
