"""CORS for /api/v1/: a browser page on an origin in CORS_ALLOWED_ORIGINS may call the API with
a key (a preflight answered without one); any other origin is not let in (issue 16, item 8)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED = "https://notebook.example.org"
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(autouse=True)
def allowed_origin(settings):
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED]


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
        timeout=10,
    )


def test_a_preflight_from_an_allowed_origin_is_answered_without_a_key(gateway):
    answer = preflight(f"{gateway.url}/chat/completions", ALLOWED)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed_headers = answer.headers["access-control-allow-headers"]
    assert "authorization" in allowed_headers and "*" in allowed_headers
    assert "access-control-allow-credentials" not in answer.headers


def test_a_preflight_from_another_origin_is_not_let_in(gateway):
    answer = preflight(f"{gateway.url}/chat/completions", "https://evil.example")
    assert "access-control-allow-origin" not in answer.headers


def test_an_allowed_origin_reads_the_answer_and_its_headers(gateway):
    answer = httpx.post(
        f"{gateway.url}/chat/completions",
        json={"model": "chat-small", "messages": HELLO, "max_tokens": 2},
        headers={"Authorization": f"Bearer {gateway.secret}", "Origin": ALLOWED},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    exposed = answer.headers["access-control-expose-headers"]
    assert "x-request-id" in exposed and "x-anvil-credits-charged" in exposed


def test_another_origin_gets_no_cors_header_on_an_answer(gateway):
    answer = httpx.get(
        f"{gateway.url}/models",
        headers={"Authorization": f"Bearer {gateway.secret}", "Origin": "https://evil.example"},
        timeout=10,
    )
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def test_the_portal_s_api_answers_a_preflight_and_its_pages_stay_same_origin(gateway):
    portal = gateway.url.removesuffix("/api/v1")
    api = preflight(f"{portal}/api/v1/api_keys/create", ALLOWED)
    assert api.headers["access-control-allow-origin"] == ALLOWED
    page = httpx.get(f"{portal}/accounts/login/", headers={"Origin": ALLOWED}, timeout=10)
    assert "access-control-allow-origin" not in page.headers


def test_without_allowed_origins_nothing_is_let_in(gateway, settings):
    settings.CORS_ALLOWED_ORIGINS = []
    answer = preflight(f"{gateway.url}/chat/completions", ALLOWED)
    assert "access-control-allow-origin" not in answer.headers
