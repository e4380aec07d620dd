"""litellm as a client of Anvil: its OpenAI-compatible provider (``openai/<model>``) with Anvil's
base URL, offline (tests/compat/conftest.py sets its environment before it is imported) and with
no callbacks, so nothing but Anvil on loopback is called."""

from __future__ import annotations

import json

import litellm
import pytest

pytestmark = [
    pytest.mark.django_db,  # the database exists; the world is the module's (conftest)
    # litellm's own types, as pydantic 2.14 sees them: nothing a user of Anvil can change
    pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings("ignore:Accessing the 'model_.*' attribute:DeprecationWarning"),
]

# The development backend begins its reply with the text after "ECHO:"; the prompt is
# 4 + ceil(22 / 4) = 10 tokens (tests/compat/test_openai.py has the rules).
HELLO = [{"role": "user", "content": "ECHO: Hello from Anvil"}]
WEATHER = [{"role": "user", "content": "What is the weather? ECHO: Kraków"}]
GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(autouse=True)
def quiet_litellm(monkeypatch):
    """No logging callbacks, no telemetry, no retries: a call is one request to Anvil."""
    for name in ("callbacks", "success_callback", "failure_callback", "input_callback"):
        monkeypatch.setattr(litellm, name, [])
    monkeypatch.setattr(litellm, "telemetry", False, raising=False)
    monkeypatch.setattr(litellm, "num_retries", 0)
    monkeypatch.setattr(litellm, "suppress_debug_info", True)


def to_anvil(anvil) -> dict:
    return {"api_base": anvil.url, "api_key": anvil.secret, "max_retries": 0}


def test_completion_answers_the_backends_text_with_usage(anvil):
    response = litellm.completion(
        model="openai/chat-small", messages=HELLO, max_tokens=3, **to_anvil(anvil)
    )
    assert response.choices[0].message.content == "Hello from Anvil"
    assert response.choices[0].finish_reason == "length"
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 3, 13)


def test_streaming_yields_the_text_and_ends_with_the_usage(anvil):
    stream = litellm.completion(
        model="openai/chat-small",
        messages=HELLO,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
        **to_anvil(anvil),
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from Anvil ") and len(text.split()) == 5
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 5)


def test_completion_returns_the_tool_call(anvil):
    response = litellm.completion(
        model="openai/chat-small", messages=WEATHER, tools=[GET_WEATHER], **to_anvil(anvil)
    )
    (call,) = response.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Kraków"}
    assert response.choices[0].finish_reason == "tool_calls"


def test_embedding_returns_the_vectors_anvil_answers(anvil):
    response = litellm.embedding(
        model="openai/embed-small", input=["first text", "second text"], **to_anvil(anvil)
    )
    vectors = [item["embedding"] for item in response.data]
    assert [len(v) for v in vectors] == [32, 32]
    expected = anvil.client().embeddings.create(
        model="embed-small", input=["first text", "second text"], encoding_format="float"
    )
    assert vectors == [d.embedding for d in expected.data]
    assert response.usage.prompt_tokens == 6


def test_a_context_overflow_raises_context_window_exceeded(anvil):
    with pytest.raises(litellm.ContextWindowExceededError) as info:
        litellm.completion(
            model="openai/chat-small", messages=HELLO, max_tokens=9000, **to_anvil(anvil)
        )
    assert info.value.status_code == 400
    assert "maximum context length is 8192 tokens" in info.value.message


def test_an_embedding_input_past_the_window_raises_context_window_exceeded(anvil):
    with pytest.raises(litellm.ContextWindowExceededError) as info:
        litellm.embedding(model="openai/embed-small", input="x" * 4000, **to_anvil(anvil))
    assert "maximum context length is 512 tokens" in info.value.message
    assert "you requested 1000 tokens in one input" in info.value.message
