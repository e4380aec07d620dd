"""Closing a month: statements per grant, member and key, written once and never changed."""

from __future__ import annotations

import threading
from decimal import Decimal
from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction

from apps.core.exceptions import ApplicationError
from apps.statements.models import Statement, StatementImmutable, StatementKind, StatementLine
from apps.statements.services import (
    PeriodStillOpen,
    StatementClosed,
    period_previous,
    statement_close_grant,
    statements_close,
)
from apps.statements.tasks import close_previous_month
from apps.usage.models import LedgerEntry
from tests.spending import hold_at, local, settle, spend_at

pytestmark = pytest.mark.django_db

CHAT = Decimal("0.002")  # 1000 + 1000 tokens of chat-small
EMBED = Decimal("0.0001")  # 1000 tokens of embed-small
NOVEMBER_1 = local(2026, 11, 1, 1, 0)


def statement(world, kind, **owner) -> Statement:
    return Statement.objects.get(grant=world.grant, period="2026-10", kind=kind, **owner)


@pytest.fixture
def october(world, keys):
    """Alice: two chat requests; Bob: one chat and one embedding request, in October."""
    for day in (3, 20):
        spend_at(local(2026, 10, day, 12), key=keys["alice"], model=world.chat_model)
    spend_at(local(2026, 10, 9, 8), key=keys["bob"], model=world.chat_model)
    spend_at(local(2026, 10, 9, 9), key=keys["bob"], model=world.embed_model, completion_tokens=0)


def test_it_closes_last_month_into_grant_member_and_key_statements(world, keys, october):
    report = statements_close(now=NOVEMBER_1)
    assert (report.period, report.closed) == ("2026-10", ["alice-grant"])
    grant = statement(world, StatementKind.GRANT)
    assert (grant.requests, grant.credits) == (4, 3 * CHAT + EMBED)
    assert (grant.prompt_tokens, grant.completion_tokens) == (4000, 3000)
    lines = {line.model_name: (line.requests, line.credits) for line in grant.lines.all()}
    assert lines == {"chat-small": (3, 3 * CHAT), "embed-small": (1, EMBED)}
    bob = statement(world, StatementKind.MEMBER, user=world.bob)
    assert (bob.requests, bob.credits, bob.api_key) == (2, CHAT + EMBED, None)
    assert statement(world, StatementKind.MEMBER, user=world.alice).credits == 2 * CHAT
    key = statement(world, StatementKind.KEY, api_key=keys["bob"])
    assert (key.user, key.requests, key.lines.count()) == (world.bob, 2, 2)
    assert Statement.objects.count() == 5  # grant, two members, two keys


def test_it_puts_23_59_59_in_the_closing_month_and_midnight_in_the_next(world, keys):
    spend_at(local(2026, 10, 31, 23, 59, 59), key=keys["bob"], model=world.chat_model)
    spend_at(local(2026, 11, 1, 0, 0, 0), key=keys["bob"], model=world.chat_model)
    # Both moments are on 31 October in UTC: the month boundary is Warsaw's.
    assert period_previous(now=NOVEMBER_1) == "2026-10"
    statements_close(now=NOVEMBER_1)
    assert statement(world, StatementKind.GRANT).requests == 1
    statements_close(now=local(2026, 12, 1, 1, 0))
    november = Statement.objects.get(kind=StatementKind.GRANT, period="2026-11")
    assert november.requests == 1


def test_it_closes_once_when_run_twice(world, october):
    with mock.patch("django.utils.timezone.now", return_value=NOVEMBER_1):
        assert close_previous_month() == 1
        assert close_previous_month() == 0
    assert Statement.objects.filter(period="2026-10").count() == 5


def test_it_refuses_to_rewrite_a_closed_statement(world, keys, october):
    statements_close(now=NOVEMBER_1)
    spend_at(local(2026, 10, 30, 12), key=keys["bob"], model=world.chat_model)  # a late row
    with pytest.raises(StatementClosed):
        statement_close_grant(grant=world.grant, period="2026-10", now=NOVEMBER_1)
    assert statements_close(now=NOVEMBER_1).closed == []
    assert statement(world, StatementKind.GRANT).requests == 4


def test_it_refuses_updates_and_deletes_in_the_model(world, october):
    statements_close(now=NOVEMBER_1)
    closed = statement(world, StatementKind.GRANT)
    closed.credits = Decimal("0")
    with pytest.raises(StatementImmutable):
        closed.save()
    with pytest.raises(StatementImmutable):
        closed.delete()
    with pytest.raises(StatementImmutable):
        closed.lines.first().save()


@pytest.mark.parametrize(
    "query",
    [
        "UPDATE statements_statement SET credits = 0",
        "UPDATE statements_statementline SET requests = 0",
        "DELETE FROM statements_statementline",
    ],
)
def test_it_refuses_updates_and_deletes_in_the_database(world, october, query):
    statements_close(now=NOVEMBER_1)
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(query)
    assert statement(world, StatementKind.GRANT).credits == 3 * CHAT + EMBED
    assert StatementLine.objects.filter(requests=0).count() == 0


def test_it_refuses_a_month_that_has_not_ended(world):
    with pytest.raises(ApplicationError, match="has not ended"):
        statement_close_grant(grant=world.grant, period="2026-11", now=NOVEMBER_1)
    with pytest.raises(ApplicationError, match="YYYY-MM"):
        statements_close(period="2026-13", now=NOVEMBER_1)


def test_it_waits_for_requests_of_the_month_still_in_flight(world, keys):
    hold = hold_at(local(2026, 10, 31, 23, 59), key=keys["bob"], model=world.chat_model)
    with pytest.raises(PeriodStillOpen):
        statement_close_grant(grant=world.grant, period="2026-10", now=NOVEMBER_1)
    assert statements_close(now=NOVEMBER_1).still_open == ["alice-grant"]
    assert not Statement.objects.exists()
    settle(hold)  # settled after midnight, charged to October like its counters
    assert statements_close(now=NOVEMBER_1).closed == ["alice-grant"]
    assert statement(world, StatementKind.GRANT).requests == 1


def test_it_closes_a_quiet_month_of_a_valid_grant_with_zeros(world):
    period = period_previous()
    statements_close(period=period)
    quiet = Statement.objects.get(grant=world.grant, period=period)
    assert (quiet.kind, quiet.requests, quiet.credits, quiet.lines.count()) == ("grant", 0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_it_closes_a_month_once_when_two_workers_race(world, keys):
    spend_at(local(2026, 10, 3, 12), key=keys["alice"], model=world.chat_model)
    barrier, outcomes = threading.Barrier(2), []

    def close():
        barrier.wait()
        try:
            statement_close_grant(grant=world.grant, period="2026-10", now=NOVEMBER_1)
            outcomes.append("closed")
        except StatementClosed:
            outcomes.append("already closed")
        finally:
            connection.close()

    threads = [threading.Thread(target=close) for _ in range(2)]
    [t.start() for t in threads], [t.join() for t in threads]
    assert sorted(outcomes) == ["already closed", "closed"]
    assert Statement.objects.count() == 3
    assert LedgerEntry.objects.count() == 1
