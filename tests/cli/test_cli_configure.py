"""anvil configure: profiles in a file only the user can read; the environment wins over it."""

from __future__ import annotations

import json
import stat
from decimal import Decimal

import pytest

from apps.keys.services import api_key_create
from tests.cli.conftest import failed, usage_error

pytestmark = pytest.mark.django_db(transaction=True)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_it_writes_the_profile_for_the_user_alone_and_later_commands_use_it(cli, server):
    result = cli(
        "configure",
        "--base-url",
        f"{server.url}/api/v1/",
        "--api-key",
        server.api_secret,
        "--management-key",
        server.management_secret,
    )

    assert result.returncode == 0, result.stderr
    assert f"Saved profile 'default' in {cli.config_file}" in result.stderr
    assert mode(cli.config_file) == 0o600 and mode(cli.config_file.parent) == 0o700
    assert server.api_secret in cli.config_file.read_text()
    status = cli("billing", "status", "--json")  # no ANVIL_* variable: the file alone
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["limited_by"] == "grant"


def test_it_asks_for_each_value_and_enter_keeps_what_is_there(cli, server):
    answers = f"{server.url}\n{server.api_secret}\n{server.management_secret}\n"
    assert cli("configure", input=answers).returncode == 0
    written = cli.config_file.read_text()

    again = cli("configure", input="\n\n\n")

    assert again.returncode == 0, again.stderr
    assert f"Base URL [{server.url}]" in again.stdout
    assert f"API key [{server.api_secret[:10]}..., Enter keeps it]" in again.stdout
    assert server.api_secret not in again.stdout  # a secret is never echoed whole
    assert cli.config_file.read_text() == written
    assert mode(cli.config_file) == 0o600


def test_show_tells_where_each_value_comes_from_without_the_secrets(cli, server):
    cli("configure", "--base-url", "http://127.0.0.1:9", "--api-key", server.api_secret)

    shown = cli("configure", "--show", ANVIL_BASE_URL=server.url)

    assert shown.returncode == 0, shown.stderr
    lines = [line.split() for line in shown.stdout.splitlines()]
    assert ["Base", "URL", server.url, "environment", "ANVIL_BASE_URL"] in lines
    assert ["API", "key", f"{server.api_secret[:10]}...", "file", str(cli.config_file)] in lines
    assert ["Management", "key", "not", "set"] in lines
    assert server.api_secret not in shown.stdout


def test_the_environment_wins_over_the_file(cli, server, nowhere):
    cli("configure", "--base-url", nowhere, "--api-key", server.api_secret)

    assert "connection refused" in failed(cli("models"))
    assert cli("models", ANVIL_BASE_URL=server.url).returncode == 0
    refused = failed(cli("models", ANVIL_BASE_URL=server.url, ANVIL_API_KEY="anv-not-a-key"))
    assert "HTTP 401, invalid_api_key" in refused


def test_named_profiles_keep_their_own_server_and_keys(cli, server, world):
    _key, lab_secret = api_key_create(
        grant=world.grant, owner=world.alice, name="lab", monthly_limit=Decimal("7")
    )
    cli("configure", "--base-url", server.url, "--api-key", server.api_secret)
    saved = cli("--profile", "lab", "configure", "--base-url", server.url, "--api-key", lab_secret)
    assert "Saved profile 'lab'" in saved.stderr
    assert mode(cli.config_file) == 0o600

    def monthly_limit(*args, **env):
        result = cli(*args, "billing", "status", "--json", **env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["key"]["monthly_limit"]

    assert monthly_limit() is None  # the default profile: Bob's key, no limit
    assert monthly_limit("--profile", "lab") == "7"
    assert monthly_limit(ANVIL_PROFILE="lab") == "7"
    missing = failed(cli("--profile", "other", "billing", "status"))
    assert "No server set for profile 'other'" in missing


def test_it_refuses_bad_values_before_writing_anything(cli):
    assert "anvm-" in usage_error(cli("configure", "--api-key", "anvm-abc"))
    assert "anv-" in usage_error(cli("configure", "--management-key", "anv-abc"))
    assert "http://" in usage_error(cli("configure", "--base-url", "ftp://example.org"))
    assert "profile" in usage_error(cli("--profile", "../etc", "configure", "--show"))
    assert not cli.config_file.exists()


def test_a_config_file_others_can_read_gets_a_warning(cli, server):
    cli("configure", "--base-url", server.url)
    cli.config_file.chmod(0o644)

    result = cli("health")

    assert result.returncode == 0
    assert "others can read it; chmod 600 it" in result.stderr


def test_with_nothing_configured_it_says_what_to_do(cli):
    message = failed(cli("billing", "status"))

    assert message == (
        "Error: No server set for profile 'default': run `anvil configure --base-url ...` "
        "or set ANVIL_BASE_URL."
    )
