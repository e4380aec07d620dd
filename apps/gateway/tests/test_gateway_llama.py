"""Anvil in front of a real engine: llama.cpp's server (llama-cpp-python) serving
SmolLM2-135M-Instruct as its own process, the catalog entries of demo/catalog-llama.yaml, and
the official openai package as the client. Skipped only where llama_cpp is not installed
(`make llama-install`); CI installs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from apps.catalog.models import Backend, CatalogModel
from apps.catalog.services import catalog_load, catalog_parse
from apps.keys.services import api_key_create
from apps.usage.credits import credits_for
from apps.usage.models import LedgerEntry
from apps.usage.reconcile import counters_reconcile
from tests.llama import (
    CHAT_MODEL,
    EMBED_MODEL,
    llama_cpp_missing,
    start_llama_server,
    stop_llama_server,
)
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)

CATALOG = Path(__file__).resolve().parents[3] / "demo" / "catalog-llama.yaml"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def llama_url():
    reason = llama_cpp_missing()
    if reason:
        pytest.skip(reason)
    server = start_llama_server()
    yield f"{server.url}/v1"
    stop_llama_server(server)


@dataclass
class LlamaGateway:
    client: openai.OpenAI
    chat: CatalogModel
    embed: CatalogModel


@pytest.fixture
def llama_gateway(world, anvil_server, llama_url) -> LlamaGateway:
    catalog_load(data=catalog_parse(text=CATALOG.read_text()))
    Backend.objects.filter(name="llama").update(base_url=llama_url)
    chat = CatalogModel.objects.get(name=CHAT_MODEL)
    embed = CatalogModel.objects.get(name=EMBED_MODEL)
    world.grant.allowed_models.add(chat, embed)
    _, secret = api_key_create(grant=world.grant, owner=world.bob, name="llama-tests")
    client = openai.OpenAI(
        base_url=f"{anvil_server.url}/api/v1", api_key=secret, max_retries=0, timeout=120
    )
    return LlamaGateway(client=client, chat=chat, embed=embed)


def _price(model: CatalogModel, *, prompt_tokens: int, completion_tokens: int) -> Decimal:
    return credits_for(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        prompt_price=model.prompt_price,
        completion_price=model.completion_price,
    )


def test_it_answers_a_chat_from_llama_cpp_and_bills_the_engines_own_count(llama_gateway):
    answer = llama_gateway.client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=QUESTION, max_tokens=24, temperature=0
    )
    completion = answer.parse()
    assert completion.model == CHAT_MODEL
    assert "Paris" in completion.choices[0].message.content
    usage = completion.usage
    assert usage.prompt_tokens > 10 and 0 < usage.completion_tokens <= 24
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert (entry.prompt_tokens, entry.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert not entry.estimated and entry.outcome == "ok" and entry.model_id == llama_gateway.chat.id
    expected = _price(
        llama_gateway.chat,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )
    assert entry.credits == expected > 0
    assert Decimal(answer.headers["x-anvil-credits-charged"]) == expected


def test_it_streams_from_llama_cpp_token_by_token_until_the_end(llama_gateway):
    stream = llama_gateway.client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, max_tokens=16, temperature=0, stream=True
    )
    chunks = [chunk for chunk in stream if chunk.choices]
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "Paris" in "".join(pieces)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c.model == CHAT_MODEL for c in chunks)
    # llama-cpp-python's server sends no usage in streams: Anvil counts one token per content
    # chunk (what this engine sends) and estimates the prompt, and says so in the ledger.
    entry = LedgerEntry.objects.get()
    assert entry.outcome == "ok" and entry.estimated
    assert entry.completion_tokens == len(pieces) <= 16
    assert entry.credits == _price(
        llama_gateway.chat, prompt_tokens=entry.prompt_tokens, completion_tokens=len(pieces)
    )
    assert entry.credits > 0


@pytest.mark.parametrize(
    "messages",
    [
        QUESTION,
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Name three rivers in Poland."},
        ],
    ],
    ids=["one message", "three messages"],
)
def test_a_streamed_chat_costs_what_the_same_chat_costs_answered_whole(llama_gateway, messages):
    """llama.cpp counts the chat template (37 tokens for QUESTION, whose text alone is 12) in
    a whole answer's usage but reports none in a stream: the stream's estimate adds the
    catalog's template_tokens, so both charges agree within 5 %."""
    client = llama_gateway.client
    whole = client.chat.completions.create(
        model=CHAT_MODEL, messages=messages, max_tokens=24, temperature=0
    )
    wait_for_settlements()
    stream = client.chat.completions.create(
        model=CHAT_MODEL, messages=messages, max_tokens=24, temperature=0, stream=True
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == whole.choices[0].message.content
    wait_for_settlements()
    answered, streamed = LedgerEntry.objects.order_by("created")
    assert not answered.estimated and streamed.estimated
    assert answered.prompt_tokens == whole.usage.prompt_tokens
    assert abs(streamed.prompt_tokens - answered.prompt_tokens) <= answered.prompt_tokens // 10
    assert streamed.completion_tokens == answered.completion_tokens == len(pieces)
    assert abs(streamed.credits - answered.credits) <= answered.credits * Decimal("0.05")
    assert not answered.capped and not streamed.capped
    assert counters_reconcile() == []


def test_it_embeds_with_llama_cpp_and_bills_the_prompt_tokens(llama_gateway):
    result = llama_gateway.client.embeddings.create(
        model=EMBED_MODEL, input=["The capital of France is Paris.", "Bread rises in the oven."]
    )
    first, second = (item.embedding for item in result.data)
    assert len(first) == len(second) == 576  # SmolLM2-135M's hidden size
    assert first != second and all(math.isfinite(x) for x in first + second)
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert entry.prompt_tokens == result.usage.prompt_tokens > 0
    assert entry.completion_tokens == 0 and not entry.estimated
    expected = _price(llama_gateway.embed, prompt_tokens=entry.prompt_tokens, completion_tokens=0)
    assert entry.credits == expected > 0
