"""POST /v1/responses through the official openai client: translated to chat completions for
the development backend (which serves only those), held, charged and limited like any chat."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import openai
import pytest

from apps.catalog.models import Backend
from apps.usage.credits import credits_for
from apps.usage.models import LedgerEntry
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def _charged(usage) -> Decimal:
    return credits_for(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        prompt_price=Decimal("0.5"),
        completion_price=Decimal("1.5"),
    )


def test_a_response_is_answered_and_billed_like_a_chat(gateway):
    raw = gateway.client().responses.with_raw_response.create(
        model="chat-small",
        instructions="Answer briefly.",
        input="Hello there",
        max_output_tokens=10,
        metadata={"run": "7"},
    )
    response = raw.parse()
    assert response.id.startswith("resp_")
    assert response.status == "incomplete"  # ten tokens cut the answer short
    assert response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text.split()) == 10
    assert response.model == "chat-small" and response.metadata == {"run": "7"}
    assert response.usage.output_tokens == 10
    assert response.usage.total_tokens == response.usage.input_tokens + 10
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert (entry.prompt_tokens, entry.completion_tokens) == (response.usage.input_tokens, 10)
    assert entry.credits == _charged(response.usage)
    assert Decimal(raw.headers["x-anvil-credits-charged"]) == entry.credits
    assert raw.headers["x-request-id"]


def test_the_instructions_reach_the_backend_as_a_system_message(gateway):
    """The development backend counts the chat prompt it got: the instructions are in it."""
    client = gateway.client()
    plain = client.responses.create(model="chat-small", input="Hello there", max_output_tokens=1)
    told = client.responses.create(
        model="chat-small",
        instructions="You are terse. " * 20,
        input="Hello there",
        max_output_tokens=1,
    )
    assert told.usage.input_tokens > plain.usage.input_tokens + 40


def test_a_streamed_response_sends_openais_events_and_its_usage(gateway):
    stream = gateway.client().responses.create(
        model="chat-small", input="Hello there", max_output_tokens=12, stream=True
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") == 12
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert final.output_text == text and len(text.split()) == 12
    assert final.usage.output_tokens == 12
    entry = LedgerEntry.objects.get()
    assert (entry.prompt_tokens, entry.completion_tokens) == (final.usage.input_tokens, 12)
    assert entry.credits == _charged(final.usage) and not entry.estimated


def test_the_stream_helper_of_the_openai_client_reads_the_whole_response(gateway):
    client = gateway.client()
    with client.responses.stream(model="chat-small", input="Hi", max_output_tokens=500) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()  # response.completed: the answer ended by itself
    assert final.status == "completed" and final.output_text == text
    assert final.usage.output_tokens == len(text.split())


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_and_its_output_make_a_two_turn_conversation(gateway, stream):
    client = gateway.client()
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]

    def create(input_items):
        if not stream:
            return client.responses.create(
                model="chat-small", input=input_items, tools=[WEATHER_TOOL], max_output_tokens=20
            )
        with client.responses.stream(
            model="chat-small", input=input_items, tools=[WEATHER_TOOL], max_output_tokens=20
        ) as events:
            return events.get_final_response()

    first = create(asked)
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id.startswith("call_")
    second = create(
        asked
        + [call.model_dump(exclude_none=True)]
        + [{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'}]
    )
    assert second.output[0].type == "message" and second.output_text
    wait_for_settlements()
    assert LedgerEntry.objects.count() == 2


@pytest.mark.parametrize(
    "fields, param, code",
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id", "unsupported_value"),
        ({"background": True}, "background", "unsupported_value"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
            "unsupported_content",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]", "unsupported_content"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]", "unsupported_value"),
        ({"input": 42}, "input", "invalid_value"),
        ({"input": []}, "input", "invalid_value"),
        ({"max_output_tokens": 0}, "max_output_tokens", "invalid_value"),
    ],
)
def test_what_a_chat_backend_can_not_be_given_is_refused_before_any_hold(
    gateway, fields, param, code
):
    body = {"model": "chat-small", "input": "Hello", **fields}
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client().responses.create(**body)
    error = refused.value.body
    assert (error["param"], error["code"]) == (param, code)
    assert not LedgerEntry.objects.exists()


def test_an_unknown_key_hears_401_before_its_body_is_judged(gateway):
    with pytest.raises(openai.AuthenticationError):
        gateway.client("anvil-wrong").responses.create(model="chat-small", input=42)


def test_an_input_beyond_the_context_window_is_a_context_overflow(gateway):
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client().responses.create(model="chat-small", input="word " * 40000)
    error = refused.value.body
    assert error["code"] == "context_length_exceeded" and error["param"] == "input"
    assert "maximum context length is 8192 tokens" in error["message"]


def test_an_embedding_model_can_not_answer_a_response(gateway):
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client().responses.create(model="embed-small", input="Hello")
    assert refused.value.body["code"] == "wrong_model_kind"


def test_a_backend_without_usage_is_charged_and_reported_its_estimate(gateway):
    gateway.add_model("chat-quiet", upstream="chat-small@fault=no-usage")
    raw = gateway.client().responses.with_raw_response.create(
        model="chat-quiet", input="Hello there", max_output_tokens=6
    )
    response = raw.parse()
    assert raw.headers["x-anvil-usage-estimated"] == "true"
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert entry.estimated
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        entry.prompt_tokens,
        entry.completion_tokens,
    )


def test_a_stream_broken_off_by_the_backend_ends_in_response_failed(gateway):
    gateway.add_model("chat-drops", upstream="chat-small@fault=drop-after:3")
    events = list(
        gateway.client().responses.create(
            model="chat-drops", input="Hello there", max_output_tokens=10, stream=True
        )
    )
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "backend_error"
    assert [e.type for e in events].count("response.output_text.delta") == 3
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert entry.outcome == "backend_error" and entry.completion_tokens == 3


@pytest.fixture
def native(gateway):
    """A model whose backend serves the Responses API itself (the development backend does)."""
    backend = Backend.objects.create(
        name="native", base_url=gateway.world.backend.base_url, responses="native"
    )
    model = gateway.add_model("chat-native", upstream="chat-small")
    model.backend = backend
    model.save()
    return gateway


def test_a_native_backend_gets_the_request_as_it_came(native):
    """previous_response_id is the backend's business: Anvil passes it on."""
    raw = native.client().responses.with_raw_response.create(
        model="chat-native", input="Hello there", max_output_tokens=8,
        previous_response_id="resp_earlier",
    )  # fmt: skip
    response = raw.parse()
    assert response.model == "chat-native"  # the catalog's name, not the backend's
    # the backend's own object, which has no "store" (Anvil's translation says false)
    assert "store" not in raw.http_response.json()
    assert len(response.output_text.split()) == 8
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert (entry.prompt_tokens, entry.completion_tokens) == (response.usage.input_tokens, 8)
    assert entry.credits == _charged(response.usage) and not entry.estimated
    assert Decimal(raw.headers["x-anvil-credits-charged"]) == entry.credits


def test_a_native_stream_passes_through_and_ends_with_the_credit_comment(native):
    with httpx.stream(
        "POST",
        f"{native.url}/responses",
        headers={"Authorization": f"Bearer {native.secret}"},
        json={"model": "chat-native", "input": "Hello", "max_output_tokens": 4, "stream": True},
    ) as answer:
        body = "".join(answer.iter_text())
    assert answer.status_code == 200
    assert body.count("event: response.output_text.delta\n") == 4
    assert "[DONE]" not in body and '"model":"chat-native"' in body
    assert body.rstrip().splitlines()[-1].startswith(": anvil {")
    events = list(
        native.client().responses.create(
            model="chat-native", input="Hello", max_output_tokens=4, stream=True
        )
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.usage.output_tokens == 4
    entries = list(LedgerEntry.objects.order_by("id"))
    assert [(e.completion_tokens, e.outcome, e.estimated) for e in entries] == [
        (4, "ok", False),
        (4, "ok", False),
    ]


def test_a_native_stream_the_backend_breaks_off_ends_in_an_error_event(native):
    model = native.add_model("native-drops", upstream="chat-small@fault=drop-after:2")
    model.backend = Backend.objects.get(name="native")
    model.save()
    events = list(
        native.client().responses.create(
            model="native-drops", input="Hello", max_output_tokens=9, stream=True
        )
    )
    assert [e.type for e in events].count("response.output_text.delta") == 2
    assert events[-1].type == "error" and events[-1].code == "backend_error"
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    assert entry.outcome == "backend_error" and entry.completion_tokens == 2
