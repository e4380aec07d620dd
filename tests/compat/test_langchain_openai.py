"""langchain-openai against Anvil: ChatOpenAI and OpenAIEmbeddings with Anvil's base URL."""

from __future__ import annotations

import openai
import pytest
from langchain_core.exceptions import ContextOverflowError
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

pytestmark = pytest.mark.django_db  # the database exists; the world is the module's (conftest)

# The development backend begins its reply with the text after "ECHO:"; the prompt is
# 4 + ceil(22 / 4) = 10 tokens (tests/compat/test_openai.py has the rules).
HELLO = "ECHO: Hello from Anvil"
WEATHER = "What is the weather? ECHO: Kraków"


def chat(anvil, **options) -> ChatOpenAI:
    return ChatOpenAI(
        model="chat-small", base_url=anvil.url, api_key=anvil.secret, max_retries=0, **options
    )


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def test_invoke_answers_the_backends_text_with_usage(anvil):
    message = chat(anvil, max_tokens=3).invoke(HELLO)
    assert message.content == "Hello from Anvil"
    assert message.usage_metadata["input_tokens"] == 10
    assert message.usage_metadata["output_tokens"] == 3
    assert message.usage_metadata["total_tokens"] == 13
    assert message.response_metadata["finish_reason"] == "length"
    assert message.response_metadata["model_name"] == "chat-small"


def test_stream_yields_the_text_in_pieces_and_the_usage(anvil):
    chunks = list(chat(anvil, max_tokens=6, stream_usage=True).stream(HELLO))
    assert len([c for c in chunks if c.content]) == 6  # one chunk per token
    whole = sum(chunks[1:], chunks[0])
    assert whole.content.startswith("Hello from Anvil ") and len(whole.content.split()) == 6
    assert whole.usage_metadata["input_tokens"] == 10
    assert whole.usage_metadata["output_tokens"] == 6


def test_bind_tools_gets_the_tool_call_with_its_arguments(anvil):
    message = chat(anvil).bind_tools([get_weather]).invoke(WEATHER)
    assert message.content == ""
    (call,) = message.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "Kraków"}
    assert call["id"].startswith("call_")
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_bind_tools_streams_a_tool_call_that_joins_up(anvil):
    chunks = list(chat(anvil).bind_tools([get_weather], tool_choice="get_weather").stream(WEATHER))
    whole = sum(chunks[1:], chunks[0])
    assert [(c["name"], c["args"]) for c in whole.tool_calls] == [
        ("get_weather", {"city": "Kraków"})
    ]


def test_a_context_overflow_raises_a_bad_request_with_openais_code(anvil):
    with pytest.raises(openai.BadRequestError) as info:
        chat(anvil, max_tokens=9000).invoke(HELLO)
    assert info.value.body["code"] == "context_length_exceeded"
    assert info.value.message.endswith(
        "This model's maximum context length is 8192 tokens. However, you requested 9010 tokens "
        "(10 in the messages, 9000 in the completion). Please reduce the length of the messages "
        "or completion."
    )


@pytest.mark.xfail(
    strict=True,
    reason="langchain-openai 1.8.1 looks for 'context_length_exceeded' in str(error), which "
    "openai 3.x makes of the error's message alone, so OpenAI's own overflow is not recognised "
    "either; Anvil sends OpenAI's body (code and wording) as the test above shows",
)
def test_a_context_overflow_raises_langchains_context_overflow_error(anvil):
    with pytest.raises(ContextOverflowError):
        chat(anvil, max_tokens=9000).invoke(HELLO)


def test_openai_embeddings_embed_documents_and_a_query(anvil):
    embeddings = OpenAIEmbeddings(
        model="embed-small",
        base_url=anvil.url,
        api_key=anvil.secret,
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    documents = embeddings.embed_documents(["first text", "second text"])
    assert [len(v) for v in documents] == [32, 32]
    assert all(type(x) is float for v in documents for x in v)
    expected = anvil.client().embeddings.create(
        model="embed-small", input=["first text", "second text"], encoding_format="float"
    )
    assert documents == [d.embedding for d in expected.data]
    assert embeddings.embed_query("second text") == documents[1]
