"""anvil billing status: consumption and what is left under each limit, the binding one marked;
--json is GET /api/v1/usage as is."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from apps.keys.services import api_key_create, api_key_revoke
from apps.limits.services import member_limit_set
from apps.usage.models import LedgerEntry
from apps.usage.periods import period_for
from tests.cli.conftest import failed
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limited(server, anvil):
    """Bob's key with a monthly limit of 5 credits and a total one of 20, his own monthly limit
    in the grant 30, and one chat spent; ``anvil`` uses that key."""
    world = server.world
    _key, secret = api_key_create(
        grant=world.grant,
        owner=world.bob,
        name="limited",
        monthly_limit=Decimal("5"),
        total_limit=Decimal("20"),
    )
    member_limit_set(
        grant=world.grant, user=world.bob, monthly_limit=Decimal("30"), changed_by=world.alice
    )
    anvil.env["ANVIL_API_KEY"] = secret
    chat = anvil("chat", "Hello", "--model", "chat-small", "--max-tokens", "5")
    assert chat.returncode == 0, chat.stderr
    wait_for_settlements()
    return secret


def test_it_shows_the_consumption_and_marks_the_binding_limit(anvil, limited):
    spent = LedgerEntry.objects.get().credits
    result = anvil("billing", "status")

    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["Billing", "status", "of", "this", "API", "key", "in", period_for()]
    spent_text = f"{spent.normalize():f}"
    assert f"Spent: {spent_text} credits this month, {spent_text} in total." in result.stdout
    left = {limit: f"{(Decimal(limit) - spent).normalize():f}" for limit in ("5", "20", "30")}
    assert ["BUDGET", "LIMIT", "USED", "LEFT"] in lines
    assert ["grant's", "credits", "1000", spent_text, left_of(1000, spent)] in lines
    assert ["key,", "in", "total", "20", spent_text, left["20"]] in lines
    assert ["key,", "this", "month", "5", spent_text, left["5"], "<-", "binding"] in lines
    assert ["member,", "this", "month", "30", spent_text, left["30"]] in lines
    assert (
        f"The next request may spend up to {left['5']} credits (the key's monthly limit)."
        in result.stdout
    )


def left_of(limit: int, spent: Decimal) -> str:
    return f"{(Decimal(limit) - spent).normalize():f}"


def test_a_key_without_limits_says_so(anvil):
    result = anvil("billing", "status")

    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["key,", "in", "total", "no", "limit", "0", "-"] in lines
    assert ["grant's", "credits", "1000", "0", "1000", "<-", "binding"] in lines


def test_json_equals_get_usage_for_the_same_key(anvil, server, limited):
    result = anvil("billing", "status", "--json")

    assert result.returncode == 0, result.stderr
    usage = httpx.get(f"{server.url}/api/v1/usage", headers={"Authorization": f"Bearer {limited}"})
    assert usage.status_code == 200
    assert json.loads(result.stdout) == usage.json()
    assert usage.json()["limited_by"] == "key_monthly"


def test_a_revoked_key_is_one_line_and_a_failure(anvil, server):
    api_key_revoke(key=server.api_key)

    message = failed(anvil("billing", "status"))

    assert "revoked" in message and message.endswith("(HTTP 401, invalid_api_key)")


def test_a_management_key_is_the_wrong_kind(anvil, server):
    message = failed(anvil("billing", "status", ANVIL_API_KEY=server.management_secret))

    assert message.endswith("(HTTP 403, wrong_key_kind)")
