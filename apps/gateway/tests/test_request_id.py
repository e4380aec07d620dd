"""Every answer carries ``X-Request-ID``: the client's own when it sent a valid one, else one
made up, so a user can quote a request to support (issue 16, item 8)."""

from __future__ import annotations

import re

import httpx
import pytest
from django.urls import reverse

from apps.keys.services import api_key_create
from apps.usage.models import LedgerEntry
from tests.world import wait_for_settlements

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


def test_the_ledger_row_keeps_the_request_id_the_answer_carried(gateway):
    quoted = chat(gateway, **{"X-Request-ID": "support-case.43"})
    made_up = chat(gateway).headers["x-request-id"]
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        json={"model": "chat-small", "messages": HELLO, "max_tokens": 3, "stream": True},
        headers={"Authorization": f"Bearer {gateway.secret}", "X-Request-ID": "stream-7"},
        timeout=10,
    ) as streamed:
        streamed.read()
    wait_for_settlements()
    rows = LedgerEntry.objects.order_by("id").values_list("request_id", "completion_tokens")
    assert quoted.status_code == 200
    assert list(rows) == [("support-case.43", 2), (made_up, 2), ("stream-7", 3)]


def test_a_person_finds_their_key_s_request_by_its_id_on_the_key_page(gateway, client):
    chat(gateway, **{"X-Request-ID": "find-me-1"})
    _, other_secret = api_key_create(
        grant=gateway.world.grant, owner=gateway.world.bob, name="other"
    )
    httpx.post(
        f"{gateway.url}/chat/completions",
        json={"model": "chat-small", "messages": HELLO, "max_tokens": 4},
        headers={"Authorization": f"Bearer {other_secret}", "X-Request-ID": "other-key-1"},
        timeout=10,
    )
    wait_for_settlements()
    client.force_login(gateway.world.bob)
    page = reverse("consumption:api_key", args=[gateway.key.public_id])
    found = client.get(page, {"request_id": "find-me-1"})
    assert found.context["request_found"].completion_tokens == 2
    assert b'data-testid="request-found"' in found.content
    # another key's request is not this key's, even for the same person
    missing = client.get(page, {"request_id": "other-key-1"})
    assert missing.context["request_found"] is None
    assert b"No request of this key has the ID" in missing.content
    # and another person can not open the key's page at all
    client.force_login(gateway.world.charlie)
    assert client.get(page, {"request_id": "find-me-1"}).status_code == 404
