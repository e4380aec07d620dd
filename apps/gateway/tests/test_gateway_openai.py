"""The official openai package against Anvil, as users call it."""

from __future__ import annotations

import base64
import re
import struct
from decimal import Decimal

import httpx
import openai
import pytest

from apps.usage.credits import credits_for
from apps.usage.models import LedgerEntry
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


def test_it_lists_the_models_this_key_may_use(gateway):
    gateway.add_model("not-for-this-grant", allow=False)
    names = [m.id for m in gateway.client().models.list()]
    assert names == ["chat-small", "embed-small"]


def test_it_answers_a_chat_and_bills_it_exactly(gateway):
    answer = gateway.client().chat.completions.with_raw_response.create(
        model="chat-small", messages=HELLO, max_tokens=10
    )
    completion = answer.parse()
    assert completion.model == "chat-small"
    assert completion.choices[0].message.content
    usage = completion.usage
    wait_for_settlements()
    entry = LedgerEntry.objects.get()
    expected = credits_for(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        prompt_price=Decimal("0.5"),
        completion_price=Decimal("1.5"),
    )
    assert entry.credits == expected
    assert (entry.prompt_tokens, entry.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert not entry.estimated and entry.outcome == "ok"
    assert Decimal(answer.headers["x-anvil-credits-charged"]) == expected
    assert answer.headers["x-anvil-limited-by"] == "grant"
    assert Decimal(answer.headers["x-anvil-credits-remaining"]) == Decimal(1000) - expected


def test_it_streams_a_chat_and_ends_with_done(gateway):
    stream = gateway.client().chat.completions.create(
        model="chat-small", messages=HELLO, max_tokens=12, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 12
    assert all(c.usage is None for c in chunks)  # usage was not asked for: hidden
    entry = LedgerEntry.objects.get()
    assert entry.completion_tokens == 12 and not entry.estimated


def test_it_passes_the_usage_chunk_to_clients_that_ask(gateway):
    stream = gateway.client().chat.completions.create(
        model="chat-small",
        messages=HELLO,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [c.usage for c in stream if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens == 5


def test_it_sends_the_credits_in_a_trailing_comment_before_done(gateway):
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}"},
        json={"model": "chat-small", "messages": HELLO, "max_tokens": 3, "stream": True},
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert lines[-2].startswith(": anvil ") and "credits_charged" in lines[-2]


def test_it_serves_legacy_completions(gateway):
    completion = gateway.client().completions.create(
        model="chat-small", prompt="Once upon a time", max_tokens=4
    )
    assert len(completion.choices[0].text.split()) == 4


def test_it_serves_the_older_quick_start_messages_body_on_completions(gateway):
    response = httpx.post(
        f"{gateway.url}/completions",
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}", "accept": "application/json"},
        json={
            "model": "chat-small",
            "messages": HELLO,
            "max_tokens": 100,
            "top_p": 1,
            "temperature": 1,
            "presence_penalty": 0,
            "frequency_penalty": 0,
            "stream": "false",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


def test_it_embeds_as_floats_and_as_base64(gateway):
    client = gateway.client()
    floats = client.embeddings.create(model="embed-small", input=["a", "b"])
    assert len(floats.data) == 2 and len(floats.data[0].embedding) == 32
    raw = httpx.post(
        f"{gateway.url}/embeddings",
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}"},
        json={"model": "embed-small", "input": "a", "encoding_format": "base64"},
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    decoded = list(struct.unpack(f"<{len(packed) // 4}f", packed))
    assert decoded == pytest.approx(floats.data[0].embedding, abs=1e-6)
    wait_for_settlements()
    assert LedgerEntry.objects.filter(model__name="embed-small").count() == 2


def test_it_passes_tools_through(gateway):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    completion = gateway.client().chat.completions.create(
        model="chat-small",
        tools=tools,
        tool_choice="auto",
        messages=[{"role": "user", "content": "What is the weather in Kraków?"}],
    )
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert completion.choices[0].finish_reason == "tool_calls"


def test_it_refuses_an_unknown_key(gateway):
    with pytest.raises(openai.AuthenticationError):
        gateway.client(secret="anv-not-a-real-key").models.list()


def test_it_refuses_an_unknown_model(gateway):
    with pytest.raises(openai.NotFoundError) as info:
        gateway.client().chat.completions.create(model="nope", messages=HELLO)
    assert info.value.body["code"] == "model_not_found"


def test_it_refuses_a_model_the_grant_may_not_use(gateway):
    gateway.add_model("elsewhere", allow=False)
    with pytest.raises(openai.PermissionDeniedError):
        gateway.client().chat.completions.create(model="elsewhere", messages=HELLO)


def test_it_refuses_an_inactive_model(gateway):
    gateway.add_model("resting", active=False)
    with pytest.raises(openai.InternalServerError) as info:
        gateway.client().chat.completions.create(model="resting", messages=HELLO)
    assert info.value.status_code == 503


def test_it_refuses_a_non_commercial_model_to_commercial_users(gateway):
    gateway.add_model("academic-only", tags=["non-commercial"])
    gateway.world.bob.affiliation = "commercial"
    gateway.world.bob.save()
    with pytest.raises(openai.PermissionDeniedError):
        gateway.client().chat.completions.create(model="academic-only", messages=HELLO)


def test_it_refuses_the_wrong_kind_of_model(gateway):
    with pytest.raises(openai.BadRequestError) as info:
        gateway.client().embeddings.create(model="chat-small", input="x")
    assert info.value.body["code"] == "wrong_model_kind"
    assert "'chat-small' is a chat model" in info.value.message


def test_it_answers_base64_when_the_backend_sent_floats(gateway):
    gateway.add_model("floats-only", upstream="embed-small@fault=floats-only", kind="embedding")
    client = gateway.client()
    floats = client.embeddings.create(model="floats-only", input="a", encoding_format="float")
    raw = httpx.post(
        f"{gateway.url}/embeddings",
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}"},
        json={"model": "floats-only", "input": "a", "encoding_format": "base64"},
    ).json()
    assert isinstance(raw["data"][0]["embedding"], str)
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == floats.data[0].embedding


@pytest.mark.parametrize(
    ("given", "tokens"),
    [
        ("x" * 68, 17),  # text: a token per 4 bytes
        ([1] * 17, 17),  # token ids: counted exactly
        (["short", "x" * 68, "short"], 17),  # each input on its own
        ([[1] * 3, [1] * 17], 17),
    ],
)
def test_an_embedding_input_longer_than_the_context_window_is_refused(gateway, given, tokens):
    gateway.add_model("tiny-embed", upstream="embed-small", kind="embedding", context_window=16)
    with pytest.raises(openai.BadRequestError) as info:
        gateway.client().embeddings.create(model="tiny-embed", input=given)
    assert info.value.body["code"] == "context_length_exceeded"
    assert info.value.body["message"].startswith(
        f"This model's maximum context length is 16 tokens. However, you requested {tokens} "
        "tokens in one input."
    )


def test_embedding_inputs_that_each_fit_the_window_are_served(gateway):
    gateway.add_model("tiny-embed", upstream="embed-small", kind="embedding", context_window=16)
    client = gateway.client()
    assert len(client.embeddings.create(model="tiny-embed", input=["x" * 64, "y" * 64]).data) == 2
    assert len(client.embeddings.create(model="tiny-embed", input=[[1] * 16, [2] * 16]).data) == 2


def test_it_names_an_embedding_model_with_its_article(gateway):
    with pytest.raises(openai.BadRequestError) as info:
        gateway.client().chat.completions.create(model="embed-small", messages=HELLO)
    assert "'embed-small' is an embedding model" in info.value.message


def test_it_refuses_a_request_larger_than_the_context_window(gateway):
    with pytest.raises(openai.BadRequestError) as info:
        gateway.client().chat.completions.create(
            model="chat-small", messages=HELLO, max_tokens=9000
        )
    assert "8192" in info.value.message and "9000" in info.value.message
    assert info.value.body["code"] == "context_length_exceeded"
    # OpenAI's and vLLM's wording, which litellm and LangChain recognise as a context overflow
    assert re.fullmatch(
        r"This model's maximum context length is 8192 tokens\. However, you requested "
        r"(\d+) tokens \((\d+) in the messages, 9000 in the completion\)\. Please reduce the "
        r"length of the messages or completion\.",
        info.value.body["message"],
    )


def test_a_completion_too_long_for_the_context_names_the_prompt(gateway):
    with pytest.raises(openai.BadRequestError) as info:
        gateway.client().completions.create(model="chat-small", prompt="Hello", max_tokens=9000)
    assert info.value.body["code"] == "context_length_exceeded"
    assert "in the prompt, 9000 in the completion)" in info.value.body["message"]


def test_it_refuses_when_the_credits_run_out(gateway):
    gateway.world.grant.credits_allocated = Decimal("0.000001")
    gateway.world.grant.save()
    with pytest.raises(openai.RateLimitError) as info:
        gateway.client().chat.completions.create(model="chat-small", messages=HELLO)
    assert info.value.body["code"] == "insufficient_quota"
    assert "grant" in info.value.message.lower()
    assert info.value.response.headers["x-anvil-limited-by"] == "grant"
    assert Decimal(info.value.response.headers["x-anvil-credits-remaining"]) == Decimal("0.000001")


def test_a_refusal_names_the_key_s_own_limit_in_its_headers(gateway):
    gateway.key.total_limit = Decimal("0.000002")
    gateway.key.save()
    with pytest.raises(openai.RateLimitError) as info:
        gateway.client().chat.completions.create(model="chat-small", messages=HELLO)
    assert info.value.response.headers["x-anvil-limited-by"] == "key_total"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"model": 5, "messages": []}', 400),
        (b'{"model": "chat-small", "messages": "hi"}', 400),
        (
            b'{"model": "chat-small", "messages": [{"role": "user", "content": "x"}], '
            b'"max_tokens": "many"}',
            400,
        ),
        (
            b'{"model": "chat-small", "messages": [{"role": "user", "content": "x"}], '
            b'"stream": "sometimes"}',
            400,
        ),
    ],
)
def test_it_answers_bad_bodies_with_400_in_openai_shape(gateway, body, status):
    response = httpx.post(
        f"{gateway.url}/chat/completions",
        content=body,
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}", "content-type": "application/json"},
    )
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_it_answers_a_huge_body_with_413(gateway, settings):
    settings.GATEWAY_MAX_BODY_BYTES = 2048
    response = httpx.post(
        f"{gateway.url}/chat/completions",
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}"},
        json={"model": "chat-small", "messages": [{"role": "user", "content": "x" * 5000}]},
    )
    assert response.status_code == 413


def test_it_answers_401_before_looking_at_a_bad_body(gateway):
    response = httpx.post(
        f"{gateway.url}/chat/completions",
        content=b"{oops",
        timeout=10,
        headers={"Authorization": "Bearer anv-wrong"},
    )
    assert response.status_code == 401


def test_it_lists_every_model_in_plgrid_format(gateway):
    gateway.add_model("elsewhere", allow=False)
    response = httpx.get(
        f"{gateway.url}/models-plgrid-format",
        timeout=10,
        headers={"Authorization": f"Bearer {gateway.secret}"},
    )
    models = {m["name"]: m for m in response.json()["data"]}
    assert "Accessible" in models["chat-small"]["tags"]
    assert "Inaccessible" in models["elsewhere"]["tags"]
    assert models["chat-small"]["completion_price"] == "1.5"


def test_it_reports_health_per_model(gateway):
    base = gateway.url.removesuffix("/v1")
    everything = httpx.get(f"{base}/health", timeout=10).json()
    assert {m["model"] for m in everything["models"]} >= {"chat-small", "embed-small"}
    one = httpx.get(f"{base}/health", params={"model": "chat-small"}, timeout=10).json()
    assert one["status"] == "up" and one["in_flight"] == 0


def test_it_refuses_a_management_key_for_inference(gateway):
    from apps.keys.services import management_key_create

    _, secret = management_key_create(owner=gateway.world.bob, name="mgmt")
    with pytest.raises(openai.PermissionDeniedError) as info:
        gateway.client(secret=secret).chat.completions.create(model="chat-small", messages=HELLO)
    assert info.value.body["code"] == "wrong_key_kind"
    with pytest.raises(openai.PermissionDeniedError):
        gateway.client(secret=secret).models.list()


def test_it_refuses_a_key_of_a_grant_that_has_ended_and_charges_nothing(gateway):
    import datetime as dt

    from django.utils import timezone

    from apps.grants.models import Grant
    from apps.keys.services import api_keys_forget_grant

    yesterday = timezone.localdate() - dt.timedelta(days=1)
    Grant.objects.filter(pk=gateway.world.grant.pk).update(
        valid_from=yesterday - dt.timedelta(days=30), valid_until=yesterday
    )
    api_keys_forget_grant(grant=gateway.world.grant)
    with pytest.raises(openai.PermissionDeniedError) as info:
        gateway.client().chat.completions.create(model="chat-small", messages=HELLO)
    assert info.value.body["code"] == "grant_not_valid"
    assert f"ended on {yesterday:%Y-%m-%d}" in info.value.body["message"]
    assert not LedgerEntry.objects.exists()
