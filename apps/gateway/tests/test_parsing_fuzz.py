"""Thousands of malformed bodies through the gateway's request parsing (views.parse: the JSON,
the fields Anvil reads, the prompt's token count), in-process. Every body is either refused
with a 400/413 in OpenAI's error shape or accepted as something the rest of the request can
use: nothing else may escape, since the credit hold and the model's slot are taken right
after parsing and an exception there would leave them taken."""

from __future__ import annotations

import json
import sys
import time

import pytest
from django.test import RequestFactory

from apps.gateway import parsing, views
from apps.gateway.errors import GatewayError
from apps.gateway.tests.malformed import KNOWN_BAD, generated, valid_body

ENDPOINTS = {"chat": views.CHAT, "completions": views.COMPLETIONS, "embeddings": views.EMBEDDINGS}
PATHS = {"chat": "/api/v1/chat/completions", "completions": "/api/v1/completions"}
ERROR_KEYS = {"message", "type", "param", "code"}
factory = RequestFactory()


def request_for(endpoint: str, raw: bytes):
    path = PATHS.get(endpoint, "/api/v1/embeddings")
    return factory.post(path, data=raw, content_type="application/json")


def parse(endpoint: str, raw: bytes):
    """The parsed request, or the GatewayError it was refused with; fails on anything else."""
    try:
        return views.parse(request_for(endpoint, raw), ENDPOINTS[endpoint])
    except GatewayError as exc:
        return exc
    except Exception as exc:
        pytest.fail(f"{endpoint} {raw[:200]!r}: {type(exc).__name__}: {exc}")


def check(endpoint: str, raw: bytes) -> bool:
    """Assert the invariants for one body; True when it was refused."""
    result = parse(endpoint, raw)
    if isinstance(result, GatewayError):
        assert result.status in (400, 413), (raw[:200], result.status)
        error = json.loads(result.response().content)["error"]
        assert set(error) == ERROR_KEYS, raw[:200]
        assert error["message"] and error["type"] == "invalid_request_error", raw[:200]
        return True
    # Accepted: what goes to the backend and into the hold must be usable.
    upstream = json.dumps(result.body, allow_nan=False, ensure_ascii=False).encode()
    assert json.loads(upstream) == result.body
    assert parsing.nesting(result.body) <= parsing.MAX_NESTING
    assert isinstance(result.model_name, str) and result.model_name.strip()
    assert result.max_tokens is None or (type(result.max_tokens) is int and result.max_tokens >= 1)
    assert type(result.stream) is bool and type(result.wants_usage) is bool
    size = result.prompt
    assert type(size.text_bytes) is int and 0 <= size.estimate <= size.upper_bound
    return False


def test_thousands_of_generated_bodies_are_refused_cleanly_or_usable():
    started = time.monotonic()
    cases = generated(seed=20240611, count=4000)
    refused = sum(check(endpoint, raw) for endpoint, raw in cases)
    # The generator must mostly make bad bodies, but not only: accepted ones are checked too.
    assert 0.5 * len(cases) < refused < len(cases)
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("raw", KNOWN_BAD, ids=range(len(KNOWN_BAD)))
def test_known_troublemakers_are_refused_cleanly_or_usable(endpoint, raw):
    check(endpoint, raw)


@pytest.mark.parametrize(
    "content",
    [b'"\\ud800"', b'"x\\udfff"', b'"\\ud83d end"', b'"\xed\xa0\x80"', b'[{"type": "text", '
     b'"text": "\\udc00"}]'],
)  # fmt: skip
def test_a_lone_surrogate_is_refused_as_invalid_json(content):
    raw = b'{"model": "m", "messages": [{"role": "user", "content": ' + content + b"}]}"
    error = parse("chat", raw)
    assert isinstance(error, GatewayError) and error.status == 400
    assert error.code == "invalid_json"


@pytest.mark.parametrize(
    "content",
    [b'"\\ud83d\\ude00"', b'"\\uD83D\\uDE00 and \\u00e9"', b'"\\\\ud800"', '"😀"'.encode()],
)
def test_surrogate_pairs_and_escaped_backslashes_are_accepted(content):
    raw = b'{"model": "m", "messages": [{"role": "user", "content": ' + content + b"}]}"
    parsed = parse("chat", raw)
    assert not isinstance(parsed, GatewayError), parsed


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(literal):
    error = parse("chat", b'{"model": "m", "temperature": ' + literal + b', "messages": []}')
    assert isinstance(error, GatewayError) and error.code == "invalid_json"


def test_nesting_up_to_the_limit_is_accepted_and_deeper_is_refused():
    deep_enough = parsing.MAX_NESTING - 3  # body, messages, message
    ok = b"[" * deep_enough + b"]" * deep_enough
    parsed = parse("chat", b'{"model": "m", "messages": [{"role": "u", "content": ' + ok + b"}]}")
    assert not isinstance(parsed, GatewayError), parsed
    too_deep = ok.replace(b"[", b"[[", 1).replace(b"]", b"]]", 1)
    error = parse(
        "chat", b'{"model": "m", "messages": [{"role": "u", "content": ' + too_deep + b"}]}"
    )
    assert isinstance(error, GatewayError) and error.status == 400
    # Far deeper than Python's recursion limit: still a 400, not a RecursionError.
    error = parse(
        "chat", b"[" * (sys.getrecursionlimit() * 10) + b"]" * (sys.getrecursionlimit() * 10)
    )
    assert isinstance(error, GatewayError) and error.status == 400


@pytest.mark.parametrize(
    ("prompt", "prompts", "text_bytes"),
    [
        ("abcd", 1, 4),
        (["ab", "cde"], 2, 5),
        ([11, 12, 13], 1, 3),  # one prompt of token ids: a token is at least one byte
        ([[11, 12], [13]], 2, 3),
    ],
)
def test_every_openai_prompt_shape_is_accepted_and_counted(prompt, prompts, text_bytes):
    raw = json.dumps({"model": "m", "prompt": prompt}).encode()
    parsed = parse("completions", raw)
    assert parsed.prompt.messages == prompts and parsed.prompt.text_bytes == text_bytes
    embedded = parse("embeddings", json.dumps({"model": "m", "input": prompt}).encode())
    assert embedded.prompt.messages == prompts and embedded.prompt.text_bytes == text_bytes


@pytest.mark.parametrize(
    "value", [["a", 1], [1, "a"], [True], [1, True], [[1], "a"], [[1, [2]]], [[]], [], [1.0]]
)
def test_mixed_or_odd_prompt_lists_are_refused(value):
    for endpoint, field in (("completions", "prompt"), ("embeddings", "input")):
        error = parse(endpoint, json.dumps({"model": "m", field: value}).encode())
        assert isinstance(error, GatewayError) and error.param == field


@pytest.mark.parametrize("options", ["yes", [True], 1, True])
def test_stream_options_must_be_an_object(options):
    body = {**valid_body("chat"), "stream": True, "stream_options": options}
    error = parse("chat", json.dumps(body).encode())
    assert isinstance(error, GatewayError) and error.param == "stream_options"


def test_stream_options_asks_for_usage():
    body = {**valid_body("chat"), "stream": True, "stream_options": {"include_usage": True}}
    assert parse("chat", json.dumps(body).encode()).wants_usage is True
    assert parse("chat", json.dumps({**body, "stream_options": None}).encode()).wants_usage is False


def test_a_chat_body_at_completions_is_served_as_chat_even_when_its_text_says_prompt():
    body = {"model": "m", "messages": [{"role": "user", "content": 'Write a "prompt"'}]}
    parsed = parse("completions", json.dumps(body).encode())
    assert parsed.endpoint.path == views.CHAT.path


def test_a_body_over_djangos_upload_limit_is_read_up_to_the_gateways(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    settings.GATEWAY_MAX_BODY_BYTES = 8192
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]}
    parsed = parse("chat", json.dumps(body).encode())
    assert parsed.prompt.text_bytes == 5000
    error = parse("chat", json.dumps({**body, "pad": "y" * 5000}).encode())
    assert isinstance(error, GatewayError) and error.status == 413


def test_utf16_is_refused_and_a_utf8_byte_order_mark_is_accepted():
    text = json.dumps(valid_body("chat"))
    assert isinstance(parse("chat", text.encode("utf-16")), GatewayError)
    assert not isinstance(parse("chat", b"\xef\xbb\xbf" + text.encode()), GatewayError)
