from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from devbackend.testing import devbackend_stats
from tests.waiting import eventually

HELLO = [{"role": "user", "content": "Hello there"}]


def _fault(value: str) -> dict[str, dict[str, str]]:
    return {"extra_headers": {"X-Dev-Fault": value}}


def test_it_fails_with_500_in_the_openai_error_shape(client):
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="m", messages=HELLO, **_fault("error-500"))
    assert raised.value.status_code == 500
    assert raised.value.body["type"] == "server_error"


def test_it_fails_with_429_and_retry_after(client):
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="m", messages=HELLO, **_fault("error-429"))
    assert raised.value.response.headers["retry-after"] == "1"
    assert raised.value.code == "rate_limit_exceeded"


def test_it_takes_faults_from_the_model_name_suffix(client):
    with pytest.raises(openai.InternalServerError):
        client.completions.create(model="anything@fault=error-503", prompt="hi")
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model="anything@colour=red", prompt="hi")
    assert raised.value.param == "model"


def test_it_drops_a_stream_after_n_token_chunks(client):
    stream = client.chat.completions.create(
        model="m", messages=HELLO, stream=True, **_fault("drop-after:3")
    )
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 1 + 3  # the role chunk and three tokens
    assert all(c.choices[0].finish_reason is None for c in received)


def test_it_drops_a_whole_response_before_its_body(client):
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m@fault=drop-after:0", messages=HELLO)


def test_it_stalls_a_stream_until_the_client_times_out(client):
    stream = client.with_options(timeout=0.5).chat.completions.create(
        model="m", messages=HELLO, stream=True, **_fault("stall-after:2")
    )
    received = []
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 1 + 2
    assert time.monotonic() - started < 3


def test_it_stalls_a_whole_response(client):
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(
            model="m", messages=HELLO, **_fault("stall-after:0")
        )


def test_it_reports_no_usage_when_asked_to(client):
    whole = client.chat.completions.create(model="m", messages=HELLO, **_fault("no-usage"))
    assert whole.usage is None
    assert whole.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
            **_fault("no-usage"),
        )
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_it_waits_the_requested_latency_before_the_first_byte(client):
    started = time.monotonic()
    client.chat.completions.create(model="m", messages=HELLO)
    fast = time.monotonic() - started
    started = time.monotonic()
    client.chat.completions.create(
        model="m", messages=HELLO, extra_headers={"X-Dev-Latency-Ms": "300"}
    )
    assert time.monotonic() - started >= 0.3 > fast
    started = time.monotonic()
    client.embeddings.create(model="e@latency-ms=200", input="x")
    assert time.monotonic() - started >= 0.2


def test_it_paces_tokens_per_second(client):
    stream = client.chat.completions.create(
        model="m",
        messages=HELLO,
        max_tokens=6,
        stream=True,
        extra_headers={"X-Dev-Tokens-Per-Second": "50"},
    )
    arrivals = [time.monotonic() for chunk in stream if chunk.choices[0].delta.content]
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] >= 5 / 50 * 0.9


def test_it_rejects_unknown_faults(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=HELLO, **_fault("explode"))


def _open_stalled_stream(http: httpx.Client, backend: str) -> tuple[httpx.Response, Iterator]:
    body = {"model": "m@fault=stall-after:1", "messages": HELLO, "stream": True}
    request = http.build_request("POST", f"{backend}/v1/chat/completions", json=body)
    response = http.send(request, stream=True)
    lines = response.iter_lines()
    next(lines)  # the role chunk arrived: the request is in flight
    return response, lines


def _wait_for(backend: str, **expected: int) -> dict[str, int]:
    """The backend's stats once they show ``expected``."""

    def showing() -> dict[str, int]:
        stats = devbackend_stats(backend)
        assert {k: stats[k] for k in expected} == expected, f"the backend's stats: {stats}"
        return stats

    return eventually(showing, timeout=3)


def test_it_counts_in_flight_requests_and_cancellations(backend):
    with httpx.Client(timeout=5) as http:
        streams = [_open_stalled_stream(http, backend) for _ in range(3)]
        stats = devbackend_stats(backend)
        assert (stats["in_flight"], stats["max_in_flight"], stats["requests"]) == (3, 3, 3)
        for response, _lines in streams:
            response.close()
        stats = _wait_for(backend, in_flight=0, cancelled=3)
        assert (stats["in_flight"], stats["cancelled"], stats["max_in_flight"]) == (0, 3, 3)
        http.post(f"{backend}/v1/completions", json={"model": "m", "prompt": "hi"})
    stats = devbackend_stats(backend)
    assert (stats["requests"], stats["cancelled"]) == (4, 3)


def test_it_counts_a_request_in_flight_only_until_its_last_byte(backend):
    """Two kept-alive connections, each sending its next request the moment the answer to
    the last one has arrived: never more than two requests out, and the backend never counts
    more than two in flight. (Ended once the request's task resumed after its last byte, the
    count overlapped the connection's next request and reached 3 or 4, in 5 runs of 5.)"""
    host, port = backend.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"model": "m@latency-ms=20", "messages": HELLO, "max_tokens": 5})
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()

    async def connection() -> list[bytes]:
        reader, writer = await asyncio.open_connection(host, int(port))
        statuses = []
        for _ in range(20):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            statuses.append(head.split()[1])
        writer.close()
        return statuses

    async def both() -> list[bytes]:
        first, second = await asyncio.gather(connection(), connection())
        return first + second

    assert asyncio.run(both()) == [b"200"] * 40
    stats = devbackend_stats(backend)
    assert (stats["requests"], stats["in_flight"], stats["max_in_flight"]) == (40, 0, 2)


def test_floats_only_ignores_a_base64_encoding_format(backend_url):
    body = {"model": "m", "input": "a", "encoding_format": "base64"}
    plain = httpx.post(f"{backend_url}/v1/embeddings", json=body, timeout=10).json()
    floats = httpx.post(
        f"{backend_url}/v1/embeddings",
        json=body,
        headers={"X-Dev-Fault": "floats-only"},
        timeout=10,
    ).json()
    assert isinstance(plain["data"][0]["embedding"], str)
    assert isinstance(floats["data"][0]["embedding"], list)
