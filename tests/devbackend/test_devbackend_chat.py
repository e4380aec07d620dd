from __future__ import annotations

import json

import httpx
import openai

from devbackend import text
from devbackend.testing import devbackend_running
from devbackend.text import DEFAULT_CONTEXT_TOKENS, REPLY_TOKENS

HELLO = [{"role": "user", "content": "Hello there"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["location"],
        },
    },
}
OTHER_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {}}}


def test_it_lists_the_configured_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["chat-small", "chat-large", "embed-small"]
    assert {m.owned_by for m in models.data} == {"anvil-devbackend"}


def test_it_answers_health_without_tokens(backend):
    response = httpx.get(f"{backend}/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_it_completes_a_chat_deterministically_for_any_model(client):
    first = client.chat.completions.create(model="whatever-model", messages=HELLO)
    again = client.chat.completions.create(model="whatever-model", messages=HELLO)
    other = client.chat.completions.create(
        model="whatever-model", messages=[{"role": "user", "content": "Something else"}]
    )
    assert first.model == "whatever-model"
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content
    assert first.choices[0].finish_reason == "stop"
    # 4 per message + ceil(11 bytes / 4)
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (7, REPLY_TOKENS)
    assert first.usage.total_tokens == 7 + REPLY_TOKENS
    assert len(first.choices[0].message.content.split()) == REPLY_TOKENS


def test_it_stops_at_max_tokens_with_finish_reason_length(client):
    reply = client.chat.completions.create(model="m", messages=HELLO, max_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5
    assert len(reply.choices[0].message.content.split()) == 5


def test_it_makes_exactly_max_tokens_with_ignore_eos(client):
    reply = client.chat.completions.create(
        model="m", messages=HELLO, max_tokens=100, extra_body={"ignore_eos": True}
    )
    assert reply.usage.completion_tokens == 100
    assert reply.choices[0].finish_reason == "length"


def test_it_echoes_the_marker_at_the_start_of_the_reply(client):
    messages = [
        {"role": "user", "content": "ECHO: not this one"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "Please ECHO: marker-7f3a travels\nignored line"},
    ]
    reply = client.chat.completions.create(model="m", messages=messages)
    assert reply.choices[0].message.content.startswith("marker-7f3a travels ")


def test_it_counts_text_parts_and_images_of_list_content(client):
    content = [
        {"type": "text", "text": "abcdefgh"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}]
    )
    assert reply.usage.prompt_tokens == 4 + 2 + 85


def test_it_streams_one_chunk_per_token(client):
    stream = client.chat.completions.create(model="m", messages=HELLO, max_tokens=6, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    tokens = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(tokens) == 6
    assert all(len(token.split()) == 1 for token in tokens)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)
    whole = client.chat.completions.create(model="m", messages=HELLO, max_tokens=6)
    assert "".join(tokens) == whole.choices[0].message.content


def test_it_sends_a_usage_chunk_only_when_asked(client):
    stream = client.chat.completions.create(
        model="m",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 7
    assert chunks[-1].usage.completion_tokens == len(chunks) - 3 == REPLY_TOKENS


def test_it_completes_text_with_and_without_streaming(client):
    whole = client.completions.create(model="m", prompt="Once upon a time", max_tokens=4)
    assert whole.object == "text_completion"
    assert len(whole.choices[0].text.split()) == 4
    assert whole.choices[0].finish_reason == "length"
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (4, 4)
    stream = client.completions.create(
        model="m",
        prompt="Once upon a time",
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks[:-1]) == whole.choices[0].text
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage.total_tokens == 8


def test_it_echoes_in_text_completions_and_counts_token_prompts(client):
    reply = client.completions.create(model="m", prompt="say ECHO: cmpl-marker")
    assert reply.choices[0].text.startswith("cmpl-marker ")
    tokens = client.completions.create(model="m", prompt=[1, 2, 3, 4, 5, 6])
    assert tokens.usage.prompt_tokens == 6


def test_it_answers_weather_questions_with_a_tool_call(client):
    reply = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "What is the weather in Kraków?"}],
        tools=[OTHER_TOOL, WEATHER_TOOL],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "c"}
    assert call.id.startswith("call_")


def test_it_calls_the_function_tool_choice_names(client):
    reply = client.chat.completions.create(
        model="m",
        messages=HELLO,
        tools=[OTHER_TOOL, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "lookup"}},
    )
    assert reply.choices[0].message.tool_calls[0].function.name == "lookup"


def test_it_answers_in_text_without_tools_or_with_tool_choice_none(client):
    weather = [{"role": "user", "content": "weather?"}]
    none = client.chat.completions.create(
        model="m", messages=weather, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert none.choices[0].finish_reason == "stop"
    assert none.choices[0].message.tool_calls is None
    plain = client.chat.completions.create(model="m", messages=HELLO, tools=[WEATHER_TOOL])
    assert plain.choices[0].message.content


def test_it_streams_a_tool_call(client):
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "weather ECHO: Gdańsk"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = list(stream)
    first = chunks[0].choices[0].delta.tool_calls[0]
    assert (first.function.name, first.function.arguments) == ("get_weather", "")
    arguments = "".join(c.choices[0].delta.tool_calls[0].function.arguments for c in chunks[1:-1])
    assert json.loads(arguments) == {"location": "Gdańsk", "unit": "c"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_min_tokens_of_any_size_stop_at_the_context_window(client):
    # The default window (131072 tokens) less the prompt's 7; not a billion tokens (issue 17:
    # it grew to 23 GB and was killed).
    reply = client.chat.completions.create(
        model="m", messages=HELLO, extra_body={"min_tokens": 1_000_000_000}
    )
    assert reply.usage.completion_tokens == DEFAULT_CONTEXT_TOKENS - 7
    assert reply.choices[0].finish_reason == "length"


def test_a_small_context_window_bounds_replies_streamed_or_not():
    with devbackend_running(context_tokens=40) as (url, _process):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=5)
        reply = client.chat.completions.create(
            model="m", messages=HELLO, max_tokens=10**9, extra_body={"ignore_eos": True}
        )
        assert (reply.usage.completion_tokens, reply.choices[0].finish_reason) == (33, "length")
        stream = client.completions.create(
            model="m",
            prompt="Hello there",  # 3 tokens
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"min_tokens": 10**9},
        )
        chunks = list(stream)
        assert chunks[-1].usage.completion_tokens == 37
        assert sum(1 for c in chunks if c.choices and c.choices[0].text) == 37


def test_no_reply_has_more_than_a_million_tokens_whatever_the_window():
    room = text.reply_room(context_tokens=10**12, prompt_tokens=7)
    tokens, finish = text.reply_tokens(
        seed=b"\0" * 32, echo="", limit=None, min_tokens=10**12, room=room
    )
    assert (len(tokens), finish) == (text.MAX_REPLY_TOKENS, "length") == (1_000_000, "length")


def test_it_counts_a_prompt_at_tokenize_as_its_chat_endpoint_does(backend, client):
    picture = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "Hello there"}, picture]}]
    answer = client.chat.completions.create(model="m", messages=messages, max_tokens=1)
    counted = httpx.post(f"{backend}/tokenize", json={"model": "m", "messages": messages}).json()
    assert counted["count"] == answer.usage.prompt_tokens == 4 + 3 + 85
    assert len(counted["tokens"]) == counted["count"]
    prompt = httpx.post(f"{backend}/tokenize", json={"model": "m", "prompt": "Hello there"})
    assert prompt.json()["count"] == 3
    refused = httpx.post(f"{backend}/tokenize", json={"model": "m", "messages": "Hello"})
    assert refused.status_code == 400
