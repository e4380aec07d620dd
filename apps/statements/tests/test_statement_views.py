"""Statements in the portal: managers read all of their grant's, members their own, outsiders
nothing; each downloads as CSV and JSON."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from apps.statements.models import Statement, StatementKind
from apps.statements.services import statements_close
from tests.spending import hold_at, local, settle, spend_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed(world, keys):
    spend_at(local(2026, 10, 3, 12), key=keys["alice"], model=world.chat_model)
    spend_at(local(2026, 10, 4, 12), key=keys["bob"], model=world.chat_model)
    statements_close(now=local(2026, 11, 1, 1))
    by_kind = {}
    for s in Statement.objects.filter(period="2026-10"):
        by_kind[(s.kind, s.user.username if s.user else None)] = s
    return by_kind


def listed(client, user, **params) -> set[tuple]:
    client.force_login(user)
    response = client.get(reverse("statements:list"), params)
    assert response.status_code == 200
    return {(s.kind, s.user.username if s.user else None) for s, _ in response.context["rows"]}


def download(client, user, statement, fmt):
    client.force_login(user)
    return client.get(reverse(f"statements:{fmt}", args=[statement.public_id]))


def test_it_lists_every_statement_of_the_grant_to_its_manager(client, world, closed):
    assert listed(client, world.alice) == set(closed)
    assert listed(client, world.alice, grant=world.grant.public_id) == set(closed)


def test_it_lists_only_their_own_statements_to_a_member(client, world, closed):
    assert listed(client, world.bob) == {("member", "bob"), ("key", "bob")}


def test_it_lists_nothing_to_an_outsider_and_hides_the_grant(client, world, closed):
    assert listed(client, world.charlie) == set()
    client.force_login(world.charlie)
    response = client.get(reverse("statements:list"), {"grant": world.grant.public_id})
    assert response.status_code == 404


def test_it_downloads_the_grant_statement_as_csv(client, world, closed):
    response = download(client, world.alice, closed[("grant", None)], "csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert (
        'filename="anvil-statement-alice-grant-2026-10-grant.csv"'
        in response["Content-Disposition"]
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["model"], r["requests"], r["credits"]) for r in rows] == [
        ("chat-small", "2", "0.004"),
        ("total", "2", "0.004"),
    ]
    assert rows[0]["period"] == "2026-10" and rows[0]["grant"] == "alice-grant"


def test_it_downloads_a_members_own_statement_as_json(client, world, closed):
    response = download(client, world.bob, closed[("key", "bob")], "json")
    assert response.status_code == 200
    document = response.json()
    assert document["kind"] == "key" and document["period"] == "2026-10"
    assert document["member"] == "bob" and document["key"]["name"] == "bob-key"
    assert document["totals"] == {
        "requests": 1, "prompt_tokens": 1000, "completion_tokens": 1000, "credits": "0.002",
        "capped": 0,
    }  # fmt: skip
    assert document["by_model"] == [{"model": "chat-small", **document["totals"]}]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_it_refuses_others_statements(client, world, closed, fmt):
    assert download(client, world.bob, closed[("grant", None)], fmt).status_code == 403
    assert download(client, world.bob, closed[("member", "alice")], fmt).status_code == 404
    assert download(client, world.charlie, closed[("member", "bob")], fmt).status_code == 404


def test_it_keeps_names_from_becoming_spreadsheet_formulas(client, world, keys):
    keys["bob"].name = "=HYPERLINK(1)"
    keys["bob"].save()
    spend_at(local(2026, 10, 4, 12), key=keys["bob"], model=world.chat_model)
    statements_close(now=local(2026, 11, 1, 1))
    key_statement = Statement.objects.get(kind=StatementKind.KEY)
    text = download(client, world.bob, key_statement, "csv").content.decode()
    assert "'=HYPERLINK(1)" in text


def test_it_links_the_statements_from_the_grant_page(client, world):
    client.force_login(world.bob)
    page = client.get(reverse("consumption:grant", args=[world.grant.public_id])).content.decode()
    assert f"{reverse('statements:list')}?grant={world.grant.public_id}" in page


def test_it_counts_capped_requests_in_the_statements_an_operator_reads(client, world, keys):
    """A request that cost more than its hold (charged the hold, its row ``capped``) is an
    alarm: the statements count such requests, on the page and in both downloads."""
    spend_at(local(2026, 10, 3, 12), key=keys["alice"], model=world.chat_model)
    hold = hold_at(local(2026, 10, 4, 12), key=keys["bob"], model=world.chat_model)
    assert settle(hold, prompt_tokens=5000, completion_tokens=5000).capped
    statements_close(now=local(2026, 11, 1, 1))
    client.force_login(world.alice)
    page = client.get(reverse("statements:list")).content.decode()
    assert "Capped</th>" in page
    counts = {
        (s.kind, s.user.username if s.user else None): s.capped
        for s in Statement.objects.filter(period="2026-10")
    }
    assert counts == {
        ("grant", None): 1, ("member", "alice"): 0, ("member", "bob"): 1,
        ("key", "alice"): 0, ("key", "bob"): 1,
    }  # fmt: skip
    for statement in Statement.objects.all():
        cell = f'data-statement="{statement.public_id}"'
        row = page[page.index(cell) :].split("</tr>")[0]
        assert f'data-testid="capped">{statement.capped}</td>' in row
    grant = Statement.objects.get(kind=StatementKind.GRANT)
    rows = list(csv.DictReader(io.StringIO(download(client, world.alice, grant, "csv").text)))
    assert [(r["model"], r["capped"]) for r in rows] == [("chat-small", "1"), ("total", "1")]
    document = download(client, world.alice, grant, "json").json()
    assert document["totals"]["capped"] == 1 and document["by_model"][0]["capped"] == 1


@pytest.mark.parametrize("grant", [" ", "alice-grant", "0001-01-01T00:00", "\x00", "1" * 5000])
def test_a_grant_filter_that_is_no_grant_id_is_404_not_500(client, world, closed, grant):
    client.force_login(world.alice)
    assert client.get(reverse("statements:list"), {"grant": grant}).status_code == 404
