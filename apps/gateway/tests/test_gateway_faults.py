"""Backends fail and clients go away: the right error, the hold released, the right charge."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import openai
import pytest

from apps.grants.models import Grant
from apps.usage.models import Hold, LedgerEntry
from devbackend.testing import devbackend_stats, devbackend_stats_reset
from tests.waiting import eventually
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


def assert_nothing_held(gateway):
    wait_for_settlements()
    grant = Grant.objects.get(pk=gateway.world.grant.pk)
    assert grant.credits_held == 0
    assert not Hold.objects.exists()
    return grant


def test_it_answers_502_and_charges_nothing_when_the_backend_fails(gateway):
    gateway.add_model("broken", upstream="chat-small@fault=error-500")
    with pytest.raises(openai.APIStatusError) as info:
        gateway.client().chat.completions.create(model="broken", messages=HELLO)
    assert info.value.status_code == 502
    grant = assert_nothing_held(gateway)
    assert grant.credits_used == 0
    entry = LedgerEntry.objects.get()
    assert entry.credits == 0 and entry.outcome == "backend_error"


@pytest.mark.parametrize(
    ("fault", "status", "code", "retry_after"),
    [
        ("error-429", 429, "backend_rate_limited", "1"),  # the backend's own Retry-After
        ("error-503", 503, "backend_unavailable", "7"),  # none sent: the setting
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_a_busy_backend_s_status_reaches_the_client_with_retry_after_and_no_charge(
    gateway, settings, fault, status, code, retry_after, stream
):
    settings.GATEWAY_BACKEND_RETRY_AFTER = 7
    gateway.add_model("busy", upstream=f"chat-small@fault={fault}")
    with pytest.raises(openai.APIStatusError) as info:
        answer = gateway.client().chat.completions.create(
            model="busy", messages=HELLO, stream=stream
        )
        if stream:
            list(answer)
    assert info.value.status_code == status
    assert info.value.response.headers["retry-after"] == retry_after
    assert info.value.body["code"] == code
    grant = assert_nothing_held(gateway)
    assert grant.credits_used == 0
    assert LedgerEntry.objects.get().credits == 0


def test_it_answers_502_for_a_stream_refused_before_the_first_token(gateway):
    gateway.add_model("broken", upstream="chat-small@fault=error-500")
    with pytest.raises(openai.APIStatusError) as info:
        list(gateway.client().chat.completions.create(model="broken", messages=HELLO, stream=True))
    assert info.value.status_code == 502
    assert assert_nothing_held(gateway).credits_used == 0


def test_it_answers_504_when_the_backend_stalls(gateway, settings):
    settings.GATEWAY_READ_TIMEOUT = 1
    gateway.add_model("stalling", upstream="chat-small@fault=stall-after:0")
    with pytest.raises(openai.APIStatusError) as info:
        gateway.client(timeout=10).chat.completions.create(model="stalling", messages=HELLO)
    assert info.value.status_code == 504
    assert assert_nothing_held(gateway).credits_used == 0
    assert LedgerEntry.objects.get().outcome == "backend_timeout"


def test_it_bills_the_tokens_streamed_before_the_backend_dropped(gateway):
    gateway.add_model("dropping", upstream="chat-small@fault=drop-after:3")
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}"},
        json={"model": "dropping", "messages": HELLO, "stream": True},
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert any('"error"' in line for line in lines)  # told in the stream
    assert lines[-1] == "data: [DONE]"
    entry = LedgerEntry.objects.get()
    assert entry.outcome == "backend_error" and entry.completion_tokens == 3
    assert entry.estimated and entry.credits > 0
    assert assert_nothing_held(gateway).credits_used == entry.credits


def test_it_bills_a_client_that_disconnects_mid_stream_and_closes_the_backend(gateway):
    gateway.add_model("slow", upstream="chat-small@tokens-per-second=20")
    devbackend_stats_reset(gateway.backend_url)
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}"},
        json={"model": "slow", "messages": HELLO, "max_tokens": 200, "stream": True},
    ) as response:
        received = 0
        for line in response.iter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"][0]["delta"]
                received += bool(delta.get("content"))
            if received >= 5:
                break  # leaving the block closes the connection mid-stream
    eventually(LedgerEntry.objects.exists, timeout=10, what="the disconnected stream's ledger row")
    entry = LedgerEntry.objects.get()
    assert entry.outcome == "client_disconnected"
    assert 5 <= entry.completion_tokens < 200  # what was generated, not max_tokens
    assert entry.credits > 0
    assert assert_nothing_held(gateway).credits_used == entry.credits

    def backend_closed() -> dict[str, int] | bool:
        stats = devbackend_stats(gateway.backend_url)
        return stats["in_flight"] == 0 and stats

    stats = eventually(backend_closed, what="the backend's stream closed")
    assert stats["cancelled"] == 1 and stats["in_flight"] == 0


def test_it_lowers_max_tokens_to_what_the_budget_affords(gateway):
    # 200 tokens x 1.5 / 1M = 0.0003 credits; the grant has room for about half of that.
    gateway.world.grant.credits_allocated = Decimal("0.00016")
    gateway.world.grant.save()
    answer = gateway.client().chat.completions.with_raw_response.create(
        model="chat-small", messages=HELLO, max_tokens=200
    )
    lowered = int(answer.headers["x-anvil-max-tokens-lowered"])
    assert 0 < lowered < 200
    assert answer.parse().usage.completion_tokens <= lowered


def test_it_cuts_a_stream_that_outlives_the_longest_request(gateway, settings):
    settings.GATEWAY_REQUEST_MAX_SECONDS = 1
    gateway.add_model("endless", upstream="chat-small@tokens-per-second=10")
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}"},
        json={"model": "endless", "messages": HELLO, "max_tokens": 200, "stream": True},
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert any('"backend_timeout"' in line for line in lines)
    assert lines[-1] == "data: [DONE]"
    entry = LedgerEntry.objects.get()
    assert entry.outcome == "backend_timeout" and 3 <= entry.completion_tokens <= 12
    assert assert_nothing_held(gateway).credits_used == entry.credits


@pytest.mark.parametrize("stream", [False, True])
def test_it_estimates_and_marks_usage_a_backend_did_not_report(gateway, stream):
    gateway.add_model("quiet", upstream="chat-small@fault=no-usage")
    client = gateway.client()
    answer = client.chat.completions.create(
        model="quiet", messages=HELLO, max_tokens=8, stream=stream
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    else:
        text = answer.choices[0].message.content
    assert len(text.split()) == 8
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert entry.estimated and entry.outcome == "ok"
    expected = 8 if stream else -(-len(text.encode()) // 4)  # one per chunk / bytes ÷ 4
    assert entry.completion_tokens == expected and entry.prompt_tokens > 0
    assert entry.credits > 0


def test_it_reports_the_usage_it_estimated_in_the_answer(gateway):
    gateway.add_model("quiet", upstream="chat-small@fault=no-usage")
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="quiet", messages=HELLO, max_tokens=8
    )
    usage = raw.parse().usage
    assert raw.headers["x-anvil-usage-estimated"] == "true"
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        entry.prompt_tokens,
        entry.completion_tokens,
    )
    assert usage.total_tokens == entry.prompt_tokens + entry.completion_tokens


def test_a_stream_with_include_usage_gets_the_estimate_in_its_last_chunk(gateway):
    gateway.add_model("quiet", upstream="chat-small@fault=no-usage")
    options = {"stream": True, "stream_options": {"include_usage": True}}
    answer = gateway.client().chat.completions.create(
        model="quiet", messages=HELLO, max_tokens=8, **options
    )
    chunks = list(answer)
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert (usage.prompt_tokens, usage.completion_tokens) == (entry.prompt_tokens, 8)
    assert entry.completion_tokens == 8


def test_a_backend_s_own_usage_is_not_marked_estimated(gateway):
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="chat-small", messages=HELLO, max_tokens=8
    )
    assert "x-anvil-usage-estimated" not in raw.headers
    assert raw.parse().usage.completion_tokens == 8


def test_an_embedding_without_backend_usage_reports_its_estimate(gateway):
    gateway.add_model("quiet-embed", upstream="embed-small@fault=no-usage", kind="embedding")
    raw = gateway.client().embeddings.with_raw_response.create(model="quiet-embed", input="a b c")
    usage = raw.parse().usage
    assert raw.headers["x-anvil-usage-estimated"] == "true"
    wait_for_settlements()
    assert usage.prompt_tokens == usage.total_tokens == LedgerEntry.objects.get().prompt_tokens
