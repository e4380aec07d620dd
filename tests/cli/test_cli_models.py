"""anvil models and anvil health."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.cli.conftest import failed

pytestmark = pytest.mark.django_db(transaction=True)


def rows(result) -> list[list[str]]:
    assert result.returncode == 0, result.stderr
    return [line.split() for line in result.stdout.splitlines()]


def test_models_shows_prices_context_tags_and_whether_the_key_may_use_each(anvil):
    lines = rows(anvil("models"))

    assert lines[0] == [
        "MODEL",
        "KIND",
        "PROMPT/1M",
        "COMPLETION/1M",
        "CONTEXT",
        "STATUS",
        "YOURS",
        "TAGS",
    ]
    assert lines[1] == ["chat-small", "chat", "0.5", "1.5", "8192", "active", "yes", "FC"]
    assert lines[2] == ["embed-small", "embedding", "0.1", "0.1", "512", "active", "no", "EMB"]


def test_models_json_is_the_servers_list(anvil, server):
    result = anvil("models", "--json")

    listed = json.loads(result.stdout)
    expected = httpx.get(
        f"{server.url}/api/v1/models-plgrid-format",
        headers={"Authorization": f"Bearer {server.api_secret}"},
    ).json()
    assert listed == expected
    assert [m["name"] for m in listed["data"]] == ["chat-small", "embed-small"]


def test_health_shows_every_model_without_a_key(anvil):
    lines = rows(anvil("health", ANVIL_API_KEY=""))

    assert lines[0] == ["MODEL", "STATUS", "IN", "FLIGHT", "QUEUED", "LAST", "CHECK"]
    assert lines[1][:4] == ["chat-small", "up", "0/4", "0/16"]
    assert lines[2][:2] == ["embed-small", "up"]


def test_health_of_one_model_says_down_in_its_exit_status(anvil, server):
    assert rows(anvil("health", "chat-small"))[1][:2] == ["chat-small", "up"]
    server.world.chat_model.active = False
    server.world.chat_model.save()

    result = anvil("health", "chat-small")

    assert result.returncode == 1
    assert result.stdout.splitlines()[1].split()[:2] == ["chat-small", "down"]
    assert result.stderr == "Error: The model chat-small is down.\n"


def test_health_json_is_the_servers_answer(anvil):
    one = json.loads(anvil("health", "embed-small", "--json").stdout)
    every = json.loads(anvil("health", "--json").stdout)

    assert one["model"] == "embed-small" and one["status"] == "up"
    assert [m["model"] for m in every["models"]] == ["chat-small", "embed-small"]


def test_health_of_an_unknown_model_is_the_servers_404(anvil):
    message = failed(anvil("health", "nope"))

    assert message == "Error: The model 'nope' does not exist. (HTTP 404, model_not_found)"
