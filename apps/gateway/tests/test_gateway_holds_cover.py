"""What a hold covers: everything the backend will count (images by the model's rule, tool
definitions and calls, the chat template), checked against the context window with the same
sizes, and the completion limit it held for, forwarded whether the client sent one or not.
Through Anvil under uvicorn and the development backend, with the openai package."""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import pytest

from apps.catalog.models import Kind
from apps.gateway.tokens import image_sizes
from apps.usage.credits import credits_for
from apps.usage.models import LedgerEntry
from apps.usage.reconcile import counters_reconcile
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)

PICTURE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
QUESTION = {"type": "text", "text": "Describe these."}  # 15 bytes: 4 tokens


def images(count: int, detail: str | None = "low") -> list[dict]:
    url = {"url": PICTURE} if detail is None else {"url": PICTURE, "detail": detail}
    return [{"type": "image_url", "image_url": url} for _ in range(count)]


def vision(gateway, name: str = "vision", **fields):
    defaults = {"kind": Kind.VLM, "tags": ["VLM"], "context_window": 16384}
    return gateway.add_model(name, **{**defaults, **fields})


def books_balance() -> None:
    wait_for_settlements()
    assert counters_reconcile() == []


def charged(entry: LedgerEntry, model) -> Decimal:
    return credits_for(
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        prompt_price=model.prompt_price,
        completion_price=model.completion_price,
    )


def test_200_images_that_do_not_fit_the_window_are_refused(gateway):
    vision(gateway)  # 200 low-detail images: 17,000 tokens, above its 16,384
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client().chat.completions.create(
            model="vision",
            messages=[{"role": "user", "content": [QUESTION, *images(200)]}],
            max_tokens=1,
        )
    error = refused.value.body
    assert refused.value.status_code == 400 and error["code"] == "context_length_exceeded"
    assert error["message"].startswith(
        "This model's maximum context length is 16384 tokens. However, you requested 17009 "
        "tokens (17008 in the messages, 1 in the completion)."
    )
    assert not LedgerEntry.objects.exists()
    books_balance()


def test_200_images_that_fit_are_held_and_charged_at_their_size(gateway):
    model = vision(gateway, context_window=32768)
    answer = gateway.client().chat.completions.with_raw_response.create(
        model="vision", messages=[{"role": "user", "content": [QUESTION, *images(200)]}],
        max_tokens=1,
    )  # fmt: skip
    usage = answer.parse().usage
    assert usage.prompt_tokens == 17008  # the backend's count: 85 per image
    books_balance()
    entry = LedgerEntry.objects.get()
    assert (entry.prompt_tokens, entry.completion_tokens) == (17008, usage.completion_tokens)
    assert not entry.capped and not entry.estimated
    assert (
        entry.credits == charged(entry, model) == Decimal(answer.headers["x-anvil-credits-charged"])
    )


def test_an_image_of_unknown_size_counts_the_most_tiles_its_rule_allows(gateway):
    low, other = image_sizes(None)  # OpenAI's rule: 85 + 170 for each of 8 tiles
    assert (low, other) == (85, 1445)
    vision(gateway, context_window=1400)
    client = gateway.client()
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="vision", messages=[{"role": "user", "content": [QUESTION, *images(1, None)]}],
            max_tokens=1,
        )  # fmt: skip
    assert refused.value.body["code"] == "context_length_exceeded"
    assert "(1453 in the messages, 1 in the completion)" in refused.value.body["message"]
    answer = client.chat.completions.create(
        model="vision", messages=[{"role": "user", "content": [QUESTION, *images(1, "low")]}],
        max_tokens=1,
    )  # fmt: skip
    assert answer.usage.prompt_tokens == 93
    books_balance()


def test_a_fixed_image_count_from_the_catalog_is_what_an_image_costs(gateway):
    vision(gateway, context_window=1000, image_tokens=600)
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client().chat.completions.create(
            model="vision", messages=[{"role": "user", "content": [QUESTION, *images(2)]}],
            max_tokens=1,
        )  # fmt: skip
    assert "(1208 in the messages, 1 in the completion)" in refused.value.body["message"]


def test_a_model_that_takes_no_images_refuses_them(gateway):
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client().chat.completions.create(
            model="chat-small",
            messages=[{"role": "user", "content": [QUESTION, *images(1)]}],
            max_tokens=1,
        )
    error = refused.value.body
    assert error["code"] == "unsupported_content" and "does not take images" in error["message"]
    assert not LedgerEntry.objects.exists()
    books_balance()


@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}},
        {"type": "video_url", "video_url": {"url": "https://example.org/a.mp4"}},
    ],
)  # fmt: skip
def test_audio_files_and_video_are_refused_even_by_a_vision_model(gateway, part):
    vision(gateway)
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client().chat.completions.create(
            model="vision", messages=[{"role": "user", "content": [QUESTION, part]}], max_tokens=1
        )
    error = refused.value.body
    assert error["code"] == "unsupported_content"
    assert error["param"] == "messages[0].content[1]" and part["type"] in error["message"]
    assert not LedgerEntry.objects.exists()


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city. " * 40,  # 920 bytes
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_tool_definitions_count_toward_the_context_window(gateway):
    gateway.add_model("tiny", context_window=200)
    client = gateway.client()
    hello = [{"role": "user", "content": "Hello there"}]
    assert client.chat.completions.create(model="tiny", messages=hello, max_tokens=4)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="tiny", messages=hello, max_tokens=4, tools=[WEATHER_TOOL]
        )
    assert refused.value.body["code"] == "context_length_exceeded"
    tokens = 7 + -(-len(json.dumps([WEATHER_TOOL]).encode()) // 4)
    assert f"({tokens} in the messages, 4 in the completion)" in refused.value.body["message"]
    books_balance()


def test_tool_call_arguments_count_toward_the_context_window(gateway):
    gateway.add_model("tiny", context_window=200)
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris " * 150})},
    }
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client().chat.completions.create(model="tiny", messages=messages, max_tokens=4)
    assert refused.value.body["code"] == "context_length_exceeded"
    books_balance()


def test_a_request_without_max_tokens_reaches_the_backend_with_the_limit_held(gateway):
    """The issue's case: min_tokens 300 on a 64-token model. The backend gets max_tokens 57
    (the window after the 7-token prompt) and min_tokens lowered to it, so it generates no
    more than was held."""
    model = gateway.add_model("short", context_window=64)
    answer = gateway.client().chat.completions.with_raw_response.create(
        model="short", messages=[{"role": "user", "content": "Hello there"}],
        extra_body={"min_tokens": 300},
    )  # fmt: skip
    completion = answer.parse()
    assert completion.usage.completion_tokens == 57
    assert completion.choices[0].finish_reason == "length"
    assert "x-anvil-max-tokens-lowered" not in answer.headers
    books_balance()
    entry = LedgerEntry.objects.get()
    assert entry.completion_tokens == 57 and not entry.capped
    assert entry.credits == charged(entry, model)


def test_ignore_eos_without_max_tokens_generates_exactly_what_was_held(gateway):
    gateway.add_model("short", context_window=64)
    stream = gateway.client().chat.completions.create(
        model="short", messages=[{"role": "user", "content": "Hello there"}], stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    )  # fmt: skip
    usage = [chunk.usage for chunk in stream if chunk.usage][-1]
    assert usage.completion_tokens == 57  # vLLM's ignore_eos: exactly the forwarded max_tokens
    books_balance()
    assert not LedgerEntry.objects.get().capped


def test_the_models_api_tells_what_an_image_counts(gateway):
    vision(gateway, image_tokens={"tile_size": 336, "tokens_per_tile": 144, "base_tokens": 0})
    client = gateway.client()
    model = client.models.retrieve("vision").model_extra
    assert model["image_tokens"] == {"low": 0, "high": 144 * 7 * 3}  # 2048 x 768 in 336-px tiles
    assert client.models.retrieve("chat-small").model_extra["image_tokens"] is None
