"""Malformed gateway request bodies for the robustness tests: a fixed corpus of known
troublemakers and a seeded generator of mutated bodies (same seed, same bodies, so a failure
reproduces). Used in-process (test_parsing_fuzz) and through the server (test_gateway_bad_input).
"""

from __future__ import annotations

import codecs
import json
import random

MODEL = {"chat": "chat-small", "completions": "chat-small", "embeddings": "embed-small"}


def valid_body(endpoint: str) -> dict:
    if endpoint == "chat":
        return {"model": MODEL[endpoint], "messages": [{"role": "user", "content": "Hello"}]}
    if endpoint == "completions":
        return {"model": MODEL[endpoint], "prompt": "Once upon a time"}
    return {"model": MODEL[endpoint], "input": "Hello"}


def nested(depth: int, leaf=1, *, kind: str = "list"):
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


# Values of every JSON type that a field may wrongly hold. Lone surrogates ("\ud800") are sent
# as JSON escapes (ensure_ascii) or as UTF-8-encoded surrogate bytes (surrogatepass).
ODD_VALUES = [
    None, True, False, 0, 1, -1, 1.5, -0.0, 2**63, 10**30, -(10**30),
    float("nan"), float("inf"), float("-inf"),
    "", " ", "x", "true", "false", "1", "null", "\x00", "é", "😀", "\ud800", "\udfff", "a\ud83d",
    [], {}, [1], [1, 2, 3], ["a"], [[1]], [[]], [["a"]], [None], [True], [False, 1], [1.5],
    ["a", 1], [1, "a"], [[1, [2]]], [[1], "a"], [{}], [{"role": "user"}],
    {"a": 1}, {"role": "user"}, {"include_usage": True}, {"type": "function"},
    nested(5), nested(99), nested(101), nested(150, kind="dict"),
]  # fmt: skip

FIELDS = [
    "model", "messages", "prompt", "input", "max_tokens", "max_completion_tokens", "stream",
    "stream_options", "n", "tools", "tool_choice", "encoding_format", "temperature", "user",
    "functions", "min_tokens",
]  # fmt: skip

CONTENT_PARTS = [
    {"type": "text", "text": "hi"},
    {"type": "text", "text": 5},
    {"type": "text", "text": None},
    {"type": "text", "text": ["a", ["b"]]},
    {"type": "text", "text": {"text": {"text": "deep"}}},
    {"type": "image_url", "image_url": {"url": "data:,"}},
    {"type": "image_url"},
    {"type": "image_url", "image_url": {"url": "data:,", "detail": ["low"]}},
    {"type": "input_image", "image_url": 5, "detail": "low"},
    {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
    {"type": ["text"]},
    {"type": {"type": "text"}},
    {"content": "x"},
    {},
    "bare string",
    5,
    None,
    [[["a"]]],
]


def _odd(rng: random.Random):
    if rng.random() < 0.15:
        return {"role": rng.choice(["user", 5, None, ""]), "content": _odd(rng)}
    if rng.random() < 0.1:
        return "x" * rng.choice([1, 1000, 100_000])
    return rng.choice(ODD_VALUES)


def _mutate_messages(rng: random.Random, body: dict) -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    index = rng.randrange(len(messages))
    what = rng.randrange(6)
    if what == 0:
        messages[index] = _odd(rng)
    elif what == 1:
        messages[index]["role"] = _odd(rng)
    elif what == 2:
        messages[index]["content"] = _odd(rng)
    elif what == 3:
        messages[index]["content"] = rng.sample(CONTENT_PARTS, rng.randint(1, 4))
    elif what == 4:
        del messages[index]["role" if rng.random() < 0.5 else "content"]
    else:  # what a template renders beside the content: names, tool calls
        field = rng.choice(["name", "tool_call_id", "tool_calls", "function_call"])
        messages[index][field] = rng.choice([_odd(rng), [{"function": _odd(rng)}]])
    body["messages"] = messages


def mutated_body(rng: random.Random, endpoint: str) -> dict:
    body = valid_body(endpoint)
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.2:
            _mutate_messages(rng, body)
        elif roll < 0.3 and body:
            del body[rng.choice(sorted(body))]
        else:
            body[rng.choice(FIELDS)] = _odd(rng)
    return body


def encode(rng: random.Random, body) -> bytes:
    """JSON text of ``body`` the way a careless client might send it."""
    ascii_only = rng.random() < 0.7
    text = json.dumps(body, ensure_ascii=ascii_only)  # NaN and Infinity as bare literals
    raw = text.encode("utf-8", "surrogatepass")
    roll = rng.random()
    if roll < 0.05:
        raw = raw[: rng.randrange(len(raw))]  # cut short
    elif roll < 0.08:
        at = rng.randrange(len(raw))
        raw = raw[:at] + bytes([rng.randrange(256)]) + raw[at:]
    elif roll < 0.1:
        raw = codecs.BOM_UTF8 + raw
    elif roll < 0.12:
        raw = text.encode("utf-16", "surrogatepass")
    elif roll < 0.14:
        raw = b"[" + raw + b"]"
    elif roll < 0.16 and raw.startswith(b"{") and len(raw) > 2:
        raw = b'{"model": 5, "model": null, ' + raw[1:]  # duplicate keys
    return raw


def generated(seed: int, count: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    endpoints = ["chat", "completions", "embeddings"]
    cases = []
    for _ in range(count):
        endpoint = rng.choice(endpoints)
        cases.append((endpoint, encode(rng, mutated_body(rng, endpoint))))
    return cases


def _chat(content_json: bytes) -> bytes:
    return (
        b'{"model": "chat-small", "messages": [{"role": "user", "content": ' + content_json + b"}]}"
    )


# Bodies that broke (or nearly broke) the parser once, for every endpoint.
KNOWN_BAD = [
    b"",
    b" ",
    b"null",
    b"0",
    b"-1e999",
    b'"a string"',
    b"[]",
    b"[{}]",
    b"{}",
    b"{",
    b"}",
    b"NaN",
    b"\xff\xfe\x00\x00",
    b"\xef\xbb\xbf{}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"model": NaN, "messages": []}',
    b'{"model": "chat-small", "max_tokens": Infinity}',
    b'{"model": "chat-small", "max_tokens": ' + b"9" * 5000 + b"}",
    b'{"model": "chat-small", "temperature": -Infinity}',
    b'{"model": "\\ud800"}',
    b'{"model": "chat-small\\u0000"}',
    b'{"\\ud800": 1, "model": "chat-small"}',
    _chat(b'"\\ud800"'),
    _chat(b'"\\udc00 after"'),
    _chat(b'"\\ud83d"'),
    _chat(b'"\xed\xa0\x80"'),  # a surrogate encoded in UTF-8
    _chat(b'"\xc0\xaf"'),  # overlong UTF-8
    _chat(b'"\xff"'),
    _chat(b"[" * 5000 + b"]" * 5000),
    _chat(b"[" * 990 + b"]" * 990),
    _chat(b"[" * 101 + b"]" * 101),
    _chat(b'[{"type": "text", "text": ' + b"[" * 500 + b"]" * 500 + b"}]"),
    b'{"model": "chat-small", "prompt": [1, 2, 3]}',
    b'{"model": "chat-small", "prompt": ["a", 1]}',
    b'{"model": "chat-small", "prompt": [true]}',
    b'{"model": "chat-small", "prompt": [[1, [2]]]}',
    b'{"model": "chat-small", "prompt": "a", "messages": 5}',
    b'{"model": "embed-small", "input": ["a", 1]}',
    b'{"model": "embed-small", "input": [[1, 2], "a"]}',
    b'{"model": "embed-small", "input": [false]}',
    b'{"model": "chat-small", "stream": true, "stream_options": "yes",'
    b' "messages": [{"role": "user", "content": "Hi"}], "prompt": "Hi"}',
    b'{"model": "chat-small", "stream": true, "stream_options": [true],'
    b' "messages": [{"role": "user", "content": "Hi"}], "prompt": "Hi"}',
    b'{"model": "chat-small", "stream": "true", "stream_options": 1,'
    b' "messages": [{"role": "user", "content": "Hi"}], "prompt": "Hi"}',
]
