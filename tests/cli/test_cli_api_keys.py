"""anvil api-keys create: with the management key; the secret printed once, with a warning."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from apps.keys.models import ApiKey
from tests.cli.conftest import failed, usage_error

pytestmark = pytest.mark.django_db(transaction=True)

SHOWN_ONCE = "Warning: this is the only time the key is shown"


def create(anvil, *args, **env):
    return anvil("api-keys", "create", "--grant", "alice-grant", "--name", "notebook", *args, **env)


def test_it_creates_the_key_and_prints_its_secret_once_with_a_warning(anvil, server):
    result = create(
        anvil,
        "--comment",
        "for the notebook",
        "--expires",
        "2099-12-31",
        "--monthly-limit",
        "10",
        "--total-limit",
        "25.5",
    )

    assert result.returncode == 0, result.stderr
    key = ApiKey.objects.get(name="notebook")
    assert (key.owner, key.grant, key.comment) == (
        server.world.bob,
        server.world.grant,
        "for the notebook",
    )
    assert (key.monthly_limit, key.total_limit) == (Decimal("10"), Decimal("25.5"))
    assert key.expires_at.year == 2099
    lines = result.stdout.splitlines()
    assert lines[0] == "Created API key 'notebook':"
    assert ["id", str(key.public_id)] in [line.split() for line in lines]
    assert ["monthly", "limit", "10"] in [line.split() for line in lines]
    secret = lines[-1]
    assert secret.startswith("anv-") and result.stdout.count(secret) == 1
    assert result.stderr.startswith(SHOWN_ONCE)
    assert secret not in result.stderr
    # The secret printed is the key's: it works.
    status = anvil("billing", "status", "--json", ANVIL_API_KEY=secret)
    assert json.loads(status.stdout)["key"]["total_limit"] == "25.5"


def test_json_is_the_servers_answer_and_the_warning_stays_on_stderr(anvil, server):
    result = create(anvil, "--json")

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    key = ApiKey.objects.get(name="notebook")
    assert created["id"] == str(key.public_id) and created["name"] == "notebook"
    assert created["grant_id"] == str(server.world.grant.public_id)
    assert created["key"].startswith("anv-")
    assert (created["monthly_credits_quota"], created["total_credits_quota"]) == (None, None)
    assert result.stderr.startswith(SHOWN_ONCE)


def test_a_refusal_names_the_option_the_user_typed(anvil, server):
    past = failed(create(anvil, "--expires", "2001-01-01"))
    assert past == (
        "Error: --expires: The expiration date must be in the future. (HTTP 400, invalid_request)"
    )
    assert "--grant: No such grant" in failed(create(anvil, "--grant", "someone-elses"))
    create(anvil)
    assert "HTTP 409" in failed(create(anvil))  # the name is taken
    assert (
        not ApiKey.objects.filter(grant=server.world.grant)
        .exclude(name__in=["bobs-laptop", "notebook"])
        .exists()
    )


def test_a_bad_or_wrong_kind_of_key_is_one_line(anvil, server):
    assert "(HTTP 401, invalid_api_key)" in failed(
        create(anvil, ANVIL_MANAGEMENT_KEY="anvm-not-a-real-key")
    )
    assert "(HTTP 403, wrong_key_kind)" in failed(
        create(anvil, ANVIL_MANAGEMENT_KEY=server.api_secret)
    )
    assert not ApiKey.objects.filter(name="notebook").exists()


def test_bad_arguments_are_refused_before_any_request(anvil, server):
    assert "--name" in usage_error(anvil("api-keys", "create", "--grant", "alice-grant"))
    assert "--grant" in usage_error(anvil("api-keys", "create", "--name", "x"))
    for bad in ("ten", "-1", "1_000", "nan"):
        message = usage_error(create(anvil, "--monthly-limit", bad))
        assert "not a number of credits" in message
    assert not ApiKey.objects.filter(name="notebook").exists()


def test_without_a_management_key_it_says_how_to_set_one(anvil):
    message = failed(create(anvil, ANVIL_MANAGEMENT_KEY=""))

    assert "No management key set for profile 'default'" in message
    assert "ANVIL_MANAGEMENT_KEY" in message
