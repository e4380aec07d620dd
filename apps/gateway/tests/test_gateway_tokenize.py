"""A stream that ends without usage is billed for the backend's own count of its rendered
prompt where the catalog says the backend can count one (``tokenize``), else for Anvil's
estimate with the model's chat template. Through Anvil under uvicorn and the development
backend (which answers vLLM's POST /tokenize, and has no llama.cpp /apply-template)."""

from __future__ import annotations

import pytest

from apps.catalog.models import Tokenize
from apps.gateway.tests.test_gateway_holds_cover import QUESTION, books_balance, images, vision
from apps.usage.models import LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)


def _stream_without_usage(gateway, model: str, content) -> LedgerEntry:
    stream = gateway.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=4, stream=True
    )
    assert [chunk for chunk in stream]
    books_balance()
    return LedgerEntry.objects.get()


def test_a_stream_without_usage_is_billed_for_the_backends_count_of_the_prompt(gateway):
    gateway.world.backend.tokenize = Tokenize.VLLM
    gateway.world.backend.save()
    vision(gateway, upstream="vision@fault=no-usage")
    entry = _stream_without_usage(gateway, "vision", [QUESTION, *images(2, None)])
    # devbackend's /tokenize: 4 + 4 + 85 per image; Anvil's estimate would be 8 + 2 * 1445
    assert entry.prompt_tokens == 178 and entry.estimated and not entry.capped


def test_without_a_count_from_the_backend_the_estimate_adds_the_chat_template(gateway):
    gateway.world.backend.tokenize = Tokenize.LLAMA_CPP  # devbackend has no /apply-template
    gateway.world.backend.save()
    gateway.add_model("templated", upstream="templated@fault=no-usage", template_tokens=25)
    entry = _stream_without_usage(gateway, "templated", "Hello there")
    assert entry.prompt_tokens == 7 + 25 and entry.estimated and not entry.capped


def test_without_tokenize_a_stream_without_usage_is_billed_for_the_estimate(gateway):
    vision(gateway, upstream="vision@fault=no-usage")  # the backend's tokenize: none
    entry = _stream_without_usage(gateway, "vision", [QUESTION, *images(2, None)])
    assert entry.prompt_tokens == 8 + 2 * 1445 and entry.estimated and not entry.capped
