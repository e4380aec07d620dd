"""What the hold covers is what the backend may generate: every choice of ``n`` (and
``best_of``), and the smaller of ``max_tokens`` and ``max_completion_tokens``, which are both
forwarded as admitted. Nothing slips past the hold and the slot after admission."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import httpx
import openai
import pytest
from asgiref.sync import async_to_sync

from apps.gateway import views
from apps.gateway.slots import slot_stats
from apps.keys.models import ApiKey
from apps.keys.services import api_key_change_limits
from apps.usage.credits import credits_for
from apps.usage.models import Hold, LedgerEntry, Outcome
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


def post(gateway, body: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gateway.secret}"}
    return httpx.post(f"{gateway.url}/chat/completions", json=body, headers=headers, timeout=10)


def test_the_hold_covers_every_choice_of_n(gateway):
    # Room for one choice of 100 tokens but not for three: n=3 is refused before forwarding.
    prompt_bound = 200  # far above what the hello prompt can count as
    one_choice = credits_for(
        prompt_tokens=prompt_bound, completion_tokens=100,
        prompt_price=Decimal("0.5"), completion_price=Decimal("1.5"),
    )  # fmt: skip
    api_key_change_limits(key=gateway.key, monthly_limit=None, total_limit=one_choice * 3 / 2)
    base = {"model": "chat-small", "messages": HELLO, "max_tokens": 100}

    refused = post(gateway, {**base, "n": 3})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert post(gateway, {**base, "best_of": 3}).status_code == 429
    assert post(gateway, base).status_code == 200  # one choice fits
    wait_for_settlements()
    assert not Hold.objects.exists()
    assert LedgerEntry.objects.get().outcome == Outcome.OK


def test_the_hold_covers_every_prompt_of_a_completions_list(gateway):
    # A list of prompts is one completion per prompt (n of each): four prompts of 100 tokens
    # each do not fit a budget with room for one.
    one_prompt = credits_for(
        prompt_tokens=200, completion_tokens=100,
        prompt_price=Decimal("0.5"), completion_price=Decimal("1.5"),
    )  # fmt: skip
    api_key_change_limits(key=gateway.key, monthly_limit=None, total_limit=one_prompt * 3 / 2)
    headers = {"Authorization": f"Bearer {gateway.secret}"}
    body = {"model": "chat-small", "prompt": ["Hi"] * 4, "max_tokens": 100}

    refused = httpx.post(f"{gateway.url}/completions", json=body, headers=headers, timeout=10)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert not LedgerEntry.objects.exists()  # never forwarded


@pytest.mark.parametrize("value", [0, 129, 1.5, True, "2"])
def test_it_refuses_a_bad_n(gateway, value):
    response = post(gateway, {"model": "chat-small", "messages": HELLO, "n": value})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n"


def test_the_smaller_of_max_tokens_and_max_completion_tokens_is_held_and_forwarded(gateway):
    answer = gateway.client().chat.completions.create(
        model="chat-small", messages=HELLO, max_tokens=3, max_completion_tokens=500
    )
    assert answer.usage.completion_tokens <= 3
    answer = gateway.client().chat.completions.create(
        model="chat-small", messages=HELLO, max_tokens=500, max_completion_tokens=2
    )
    assert answer.usage.completion_tokens <= 2


@pytest.mark.parametrize("value", [1, 0, 1.0])
def test_it_refuses_numbers_as_the_stream_flag(gateway, value):
    response = post(gateway, {"model": "chat-small", "messages": HELLO, "stream": value})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream"


def test_a_failure_after_admission_gives_the_slot_and_the_hold_back(gateway, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug between admission and relay")

    monkeypatch.setattr(views, "CHAT", dataclasses.replace(views.CHAT, upstream=broken))
    gateway.add_model("only-one", upstream="chat-small", max_concurrency=1, queue_size=0)
    for _ in range(2):  # the second would find the only slot taken if the first kept it
        with pytest.raises(openai.InternalServerError):
            gateway.client().chat.completions.create(model="only-one", messages=HELLO)
    assert async_to_sync(slot_stats)("only-one") == {"in_flight": 0, "queued": 0}
    wait_for_settlements()
    assert not Hold.objects.exists()
    assert ApiKey.objects.get(pk=gateway.key.pk).credits_held == 0
    wait_for_settlements()
    outcomes = set(LedgerEntry.objects.values_list("outcome", "credits"))
    assert outcomes == {(Outcome.CANCELLED, Decimal(0))}
