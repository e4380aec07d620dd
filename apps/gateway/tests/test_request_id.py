"""Every answer carries ``X-Request-ID``: the client's own when it sent a valid one, else one
made up, so a user can quote a request to support (issue 16, item 8)."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


def chat(gateway, **headers) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/chat/completions",
        json={"model": "chat-small", "messages": HELLO, "max_tokens": 2},
        headers={"Authorization": f"Bearer {gateway.secret}", **headers},
        timeout=10,
    )


def test_the_client_s_request_id_comes_back(gateway):
    response = chat(gateway, **{"X-Request-ID": "support-case.42_a"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "support-case.42_a"


def test_without_one_each_answer_gets_its_own(gateway):
    ids = [chat(gateway).headers["x-request-id"] for _ in range(3)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", made_up) for made_up in ids)
    assert len(set(ids)) == 3


@pytest.mark.parametrize("given", ["x" * 129, "has space", "semi;colon"])
def test_an_invalid_request_id_is_replaced(gateway, given):
    made_up = chat(gateway, **{"X-Request-ID": given}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made_up)


def test_refusals_and_streams_carry_it_too(gateway):
    refused = httpx.post(f"{gateway.url}/chat/completions", json={}, timeout=10)
    assert refused.status_code == 401 and refused.headers["x-request-id"]
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        json={"model": "chat-small", "messages": HELLO, "max_tokens": 2, "stream": True},
        headers={"Authorization": f"Bearer {gateway.secret}", "X-Request-ID": "stream-1"},
        timeout=10,
    ) as streamed:
        assert streamed.headers["x-request-id"] == "stream-1"
        streamed.read()


def test_portal_answers_carry_it(gateway):
    portal = gateway.url.removesuffix("/api/v1")
    response = httpx.get(f"{portal}/accounts/login/", headers={"X-Request-ID": "page-7"})
    assert response.headers["x-request-id"] == "page-7"
