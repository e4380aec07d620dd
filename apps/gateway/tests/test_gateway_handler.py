"""The gateway's URLs are served by the lean handler (portal/asgi.py): no middleware, but the
same security headers and Host check, a Content-Length, the catalog's model name in streamed
chunks."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


def test_it_answers_gateway_requests_with_the_security_headers(gateway):
    answer = httpx.post(
        f"{gateway.url}/chat/completions",
        headers={"authorization": f"Bearer {gateway.secret}"},
        json={"model": "chat-small", "messages": HELLO, "max_tokens": 4},
    )
    assert answer.status_code == 200
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["content-length"] == str(len(answer.content))
    refused = httpx.get(f"{gateway.url}/models", headers={"authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_it_refuses_a_host_outside_allowed_hosts(gateway):
    answer = httpx.get(f"{gateway.url}/models", headers={"host": "evil.example"})
    assert answer.status_code == 400


def test_it_streams_the_catalog_name_not_the_backends(gateway):
    gateway.add_model("renamed", upstream="chat-small")
    stream = gateway.client().chat.completions.create(
        model="renamed", messages=HELLO, max_tokens=8, stream=True
    )
    chunks = list(stream)
    assert chunks
    assert {chunk.model for chunk in chunks} == {"renamed"}


def test_it_stops_reading_a_chunked_body_past_the_limit(settings):
    # A chunked body declares no length: the handler keeps at most the limit + 1 bytes in
    # memory and stops reading there (Django's handler spooled any size to a temporary file).
    import asyncio

    from apps.gateway.handler import GatewayHandler

    settings.GATEWAY_MAX_BODY_BYTES = 1_000_000
    chunk = b"x" * 65_536
    sent = 0

    async def receive():
        nonlocal sent
        sent += 1
        return {"type": "http.request", "body": chunk, "more_body": sent < 1_000}  # 65 MB

    body = asyncio.run(GatewayHandler().read_body(receive))
    assert len(body.getvalue()) == 1_000_001  # one byte over: the view answers 413
    assert sent == 16  # 16 chunks of 64 KiB reach the limit; the other 984 were never read


def test_it_answers_a_chunked_body_over_the_limit_with_413(gateway, settings):
    settings.GATEWAY_MAX_BODY_BYTES = 100_000

    def chunks():
        for _ in range(40):
            yield b" " * 10_000

    answer = httpx.post(
        f"{gateway.url}/chat/completions",
        headers={"authorization": f"Bearer {gateway.secret}"},
        content=chunks(),
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"
