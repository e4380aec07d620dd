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
