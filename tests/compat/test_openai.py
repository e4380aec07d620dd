"""The official ``openai`` package, sync and async, against Anvil: what its users call first."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct

import openai
import pytest

pytestmark = pytest.mark.django_db  # the database exists; the world is the module's (conftest)

# The development backend begins its reply with the text after "ECHO:" (one token per word) and
# counts 4 + ceil(bytes / 4) prompt tokens per message: 4 + ceil(22 / 4) = 10 here.
HELLO = [{"role": "user", "content": "ECHO: Hello from Anvil"}]
HELLO_PROMPT_TOKENS = 10
# It answers a chat that has tools and mentions the weather with a call to the weather tool,
# every string argument filled with the ECHO text; one completion token per 4 characters of the
# arguments' JSON ('{"city": "Kraków"}': 18 characters, 5 tokens).
WEATHER = [{"role": "user", "content": "What is the weather? ECHO: Kraków"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The local time in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
]
TEXTS = ["first text", "second text"]


def floats32(packed: str) -> list[float]:
    """OpenAI's base64 embedding: little-endian float32."""
    raw = base64.b64decode(packed)
    assert len(raw) % 4 == 0
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def async_client(anvil) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=anvil.url, api_key=anvil.secret, max_retries=0)


# --- sync ----------------------------------------------------------------------------------------


def test_it_lists_and_retrieves_the_models(anvil):
    client = anvil.client()
    assert [m.id for m in client.models.list()] == ["chat-small", "embed-small"]
    model = client.models.retrieve("chat-small")
    assert (model.id, model.object, model.owned_by) == ("chat-small", "model", "anvil")
    assert model.model_extra["context_window"] == 8192
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_it_answers_a_chat_with_the_backends_text_and_usage(anvil):
    completion = anvil.client().chat.completions.create(
        model="chat-small", messages=HELLO, max_tokens=3
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello from Anvil"
    assert choice.finish_reason == "length"
    assert completion.model == "chat-small"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        HELLO_PROMPT_TOKENS,
        3,
        HELLO_PROMPT_TOKENS + 3,
    )


def test_it_streams_a_chat_with_a_usage_chunk(anvil):
    stream = anvil.client().chat.completions.create(
        model="chat-small",
        messages=HELLO,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from Anvil ") and len(text.split()) == 8
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and chunks[-1].usage == usage[0]  # the last chunk, as OpenAI sends it
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (HELLO_PROMPT_TOKENS, 8)


def test_it_answers_with_the_tool_call_the_backend_chose(anvil):
    completion = anvil.client().chat.completions.create(
        model="chat-small", messages=WEATHER, tools=TOOLS, tool_choice="auto"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Kraków"}
    assert completion.usage.completion_tokens == 5


def test_it_streams_a_tool_call_in_pieces_that_join_up(anvil):
    stream = anvil.client().chat.completions.create(
        model="chat-small",
        messages=WEATHER,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        stream=True,
    )
    calls = [
        call
        for chunk in stream
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert calls[0].function.name == "get_time" and calls[0].id.startswith("call_")
    assert {call.index for call in calls} == {0}
    assert json.loads("".join(call.function.arguments or "" for call in calls)) == {
        "city": "Kraków"
    }


def test_it_embeds_as_floats_and_as_base64_of_the_same_floats(anvil):
    client = anvil.client()
    floats = client.embeddings.create(model="embed-small", input=TEXTS, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1]
    vectors = [d.embedding for d in floats.data]
    assert all(len(v) == 32 and all(type(x) is float for x in v) for v in vectors)
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-6) for v in vectors)
    assert vectors[0] != vectors[1]
    assert (floats.usage.prompt_tokens, floats.usage.total_tokens) == (6, 6)

    packed = client.embeddings.create(model="embed-small", input=TEXTS, encoding_format="base64")
    assert all(isinstance(d.embedding, str) for d in packed.data)
    assert [floats32(d.embedding) for d in packed.data] == vectors  # float32: exactly equal

    # Without encoding_format the package asks for base64 itself and decodes it.
    default = client.embeddings.create(model="embed-small", input=TEXTS)
    assert [d.embedding for d in default.data] == vectors


def test_it_creates_a_response_whole_and_streamed(anvil):
    """The Responses API (translated to a chat for the development backend)."""
    client = anvil.client()
    response = client.responses.create(
        model="chat-small", input="ECHO: Hello from Anvil", max_output_tokens=3
    )
    assert response.output_text == "Hello from Anvil"
    assert response.status == "incomplete"  # three tokens cut the answer short
    assert (response.usage.input_tokens, response.usage.output_tokens) == (HELLO_PROMPT_TOKENS, 3)
    events = list(
        client.responses.create(
            model="chat-small", input="ECHO: Hello from Anvil", max_output_tokens=3, stream=True
        )
    )
    assert events[0].type == "response.created" and events[-1].type == "response.incomplete"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "Hello from Anvil"
    )
    assert events[-1].response.usage.total_tokens == HELLO_PROMPT_TOKENS + 3


def test_a_response_calls_the_function_the_backend_chose(anvil):
    tools = [{"type": "function", **tool["function"]} for tool in TOOLS]
    with anvil.client().responses.stream(
        model="chat-small", input=WEATHER[0]["content"], tools=tools
    ) as stream:
        response = stream.get_final_response()
    (call,) = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Kraków"}


# --- async ---------------------------------------------------------------------------------------


def test_the_async_client_lists_and_retrieves_the_models(anvil):
    async def run():
        async with async_client(anvil) as client:
            names = [m.id async for m in client.models.list()]
            model = await client.models.retrieve("embed-small")
            return names, model

    names, model = asyncio.run(run())
    assert names == ["chat-small", "embed-small"]
    assert model.id == "embed-small" and model.model_extra["kind"] == "embedding"


def test_the_async_client_chats_and_streams_with_usage(anvil):
    async def run():
        async with async_client(anvil) as client:
            completion = await client.chat.completions.create(
                model="chat-small", messages=HELLO, max_tokens=3
            )
            stream = await client.chat.completions.create(
                model="chat-small",
                messages=HELLO,
                max_tokens=3,
                stream=True,
                stream_options={"include_usage": True},
            )
            return completion, [chunk async for chunk in stream]

    completion, chunks = asyncio.run(run())
    assert completion.choices[0].message.content == "Hello from Anvil"
    assert completion.usage.prompt_tokens == HELLO_PROMPT_TOKENS
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello from Anvil"
    )
    assert chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.total_tokens == HELLO_PROMPT_TOKENS + 3


def test_the_async_client_gets_the_tool_call(anvil):
    async def run():
        async with async_client(anvil) as client:
            return await client.chat.completions.create(
                model="chat-small", messages=WEATHER, tools=TOOLS
            )

    completion = asyncio.run(run())
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Kraków"}


def test_the_async_client_embeds_as_floats_and_as_base64(anvil):
    async def run():
        async with async_client(anvil) as client:
            floats = await client.embeddings.create(
                model="embed-small", input="first text", encoding_format="float"
            )
            packed = await client.embeddings.create(
                model="embed-small", input="first text", encoding_format="base64"
            )
            return floats, packed

    floats, packed = asyncio.run(run())
    assert len(floats.data[0].embedding) == 32
    assert floats32(packed.data[0].embedding) == floats.data[0].embedding


def test_the_async_client_creates_a_response_whole_and_streamed(anvil):
    async def run():
        async with async_client(anvil) as client:
            response = await client.responses.create(
                model="chat-small", input=HELLO, max_output_tokens=3
            )
            stream = await client.responses.create(
                model="chat-small", input=HELLO, max_output_tokens=3, stream=True
            )
            return response, [event async for event in stream]

    response, events = asyncio.run(run())
    assert response.output_text == "Hello from Anvil"
    assert response.usage.input_tokens == HELLO_PROMPT_TOKENS
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello from Anvil"
    assert events[-1].response.output_text == "Hello from Anvil"
