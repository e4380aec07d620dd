"""anvil chat: the answer streamed to stdout, the credits charged on stderr."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.keys.services import api_key_create
from apps.usage.models import LedgerEntry
from tests.cli.conftest import failed, usage_error
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)


def charged_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_it_streams_the_answer_and_prints_the_credits_charged_on_stderr(anvil):
    result = anvil("chat", "Hello there", "--model", "chat-small", "--max-tokens", "12")

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and len(result.stdout.split()) == 12
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert (entry.completion_tokens, entry.outcome) == (12, "ok")
    left = Decimal(1000) - entry.credits
    assert charged_line(result) == (
        f"Credits charged: {entry.credits.normalize():f}; {left.normalize():f} left under "
        "the grant's credits."
    )
    assert result.stderr.count("\n") == 1  # the model was chosen: no note about it


def test_it_reads_the_prompt_from_stdin_and_picks_a_model_of_the_key(anvil):
    result = anvil("chat", "-", "--max-tokens", "3", input="A long prompt\nover two lines\n")

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 3
    assert result.stderr.startswith("Model: chat-small, the cheapest of yours (choose with")
    assert LedgerEntry.objects.get().model.name == "chat-small"


def test_a_system_message_goes_before_the_prompt(anvil):
    plain = anvil("chat", "Hello", "-m", "chat-small", "--max-tokens", "1")
    system = anvil(
        "chat",
        "Hello",
        "-m",
        "chat-small",
        "--max-tokens",
        "1",
        "--system",
        "You answer in verse, always, whatever is asked.",
    )

    assert plain.returncode == system.returncode == 0
    wait_for_settlements()
    without, with_system = LedgerEntry.objects.order_by("created").values_list(
        "prompt_tokens", flat=True
    )
    assert with_system > without


def test_without_streaming_it_prints_the_whole_answer_and_its_credits(anvil):
    result = anvil("chat", "Hello", "-m", "chat-small", "--max-tokens", "4", "--no-stream")

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 4 and result.stdout.endswith("\n")
    wait_for_settlements()
    credits = LedgerEntry.objects.get().credits
    assert charged_line(result).startswith(f"Credits charged: {credits.normalize():f}; ")


def test_a_spent_limit_is_429_naming_it(anvil, server):
    world = server.world
    _key, secret = api_key_create(
        grant=world.grant, owner=world.bob, name="spent", monthly_limit=Decimal("0")
    )

    for stream in ("--stream", "--no-stream"):
        message = failed(anvil("chat", "Hello", "-m", "chat-small", stream, ANVIL_API_KEY=secret))
        assert message == (
            "Error: The key's monthly credit limit is reached (0 credits left). "
            "(HTTP 429, insufficient_quota)"
        )


def test_a_model_the_grant_may_not_use_is_403(anvil):
    message = failed(anvil("chat", "Hello", "-m", "embed-small"))

    assert message.endswith("(HTTP 403, model_not_allowed)")


def test_bad_arguments(anvil):
    assert "Missing argument 'PROMPT'" in usage_error(anvil("chat"))
    assert "empty" in usage_error(anvil("chat", "-", input="  \n"))
    assert "--max-tokens" in usage_error(anvil("chat", "Hi", "--max-tokens", "0"))
