"""Bad input through the real server (uvicorn, the development backend): bodies, methods,
headers, query strings. Every answer is a 4xx (never a 5xx, never a hang), in OpenAI's error
shape where the gateway answers, and a refused request leaves nothing behind: no open hold,
no credits held or charged, no slot taken."""

from __future__ import annotations

import json
import random
import socket
from decimal import Decimal

import httpx
import pytest
from django.db.models import Sum

from apps.gateway.errors import GatewayError
from apps.gateway.tests.malformed import KNOWN_BAD, generated, valid_body
from apps.gateway.tests.test_parsing_fuzz import parse
from apps.grants.models import Grant
from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter
from tests.world import wait_for_settlements

PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}
ERROR_KEYS = {"message", "type", "param", "code"}


def refused_sample(count: int) -> list[tuple[str, bytes, int]]:
    """(endpoint, body, status) of bodies the parser refuses: all known troublemakers and a
    seeded sample of generated ones."""
    cases = [(endpoint, raw) for raw in KNOWN_BAD for endpoint in PATHS]
    cases += generated(seed=7, count=400)
    refused = []
    for endpoint, raw in cases:
        result = parse(endpoint, raw)
        if isinstance(result, GatewayError):
            refused.append((endpoint, raw, result.status))
    rng = random.Random(11)
    return rng.sample(refused, count)


def assert_error_shape(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS
    assert isinstance(error["message"], str) and error["message"]
    return error


def assert_nothing_held_or_charged(gateway) -> None:
    wait_for_settlements()
    assert not Hold.objects.exists()
    assert not LedgerEntry.objects.filter(credits__gt=0).exists()
    held = [
        KeyMonthCounter.objects.aggregate(held=Sum("held"))["held"],
        MemberMonthCounter.objects.aggregate(held=Sum("held"))["held"],
        Grant.objects.get(pk=gateway.world.grant.pk).credits_held,
    ]
    assert all(value in (None, Decimal(0)) for value in held), held
    base = gateway.url.removesuffix("/v1")
    for model in ("chat-small", "embed-small"):
        stats = httpx.get(f"{base}/health", params={"model": model}, timeout=10).json()
        assert stats["in_flight"] == 0 and stats["queued"] == 0, stats


def post(gateway, path: str, content: bytes, **headers) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gateway.secret}", **headers}
    headers.setdefault("content-type", "application/json")
    return httpx.post(f"{gateway.url}{path}", content=content, headers=headers, timeout=10)


def test_bad_bodies_are_refused_in_openai_shape_and_nothing_is_held(gateway):
    with httpx.Client(timeout=10) as client:
        for endpoint, raw, status in refused_sample(60):
            response = client.post(
                f"{gateway.url}{PATHS[endpoint]}",
                content=raw,
                headers={
                    "Authorization": f"Bearer {gateway.secret}",
                    "content-type": "application/json",
                },
            )
            assert response.status_code == status, (endpoint, raw[:200], response.text[:300])
            assert_error_shape(response)
    assert_nothing_held_or_charged(gateway)


@pytest.mark.parametrize("options", ['"yes"', "[true]", "1"])
def test_a_stream_with_bad_stream_options_takes_no_slot(gateway, options):
    """This body once passed parsing, took the hold and the slot, then failed with a 500 and
    kept both: the model's queue filled with slots nobody would give back."""
    body = (
        b'{"model": "chat-small", "stream": true, "messages": [{"role": "user", '
        b'"content": "Hi"}], "stream_options": ' + options.encode() + b"}"
    )
    response = post(gateway, "/chat/completions", body)
    assert response.status_code == 400
    assert assert_error_shape(response)["param"] == "stream_options"
    assert_nothing_held_or_charged(gateway)


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "chat-small", "prompt": [1, 2, 3]}',
        b'{"model": "chat-small", "prompt": "\\ud800"}',
        b'{"model": "chat-small", "prompt": "hi", "messages": 5}',
        b'{"model": "chat-small", "prompt": [[1], "a"]}',
    ],
)
def test_completions_prompts_that_once_made_a_500(gateway, body):
    response = post(gateway, "/completions", body)
    assert response.status_code < 500, response.text[:300]
    if response.status_code != 200:
        assert_error_shape(response)


def test_a_prompt_of_token_ids_is_served(gateway):
    response = post(gateway, "/completions", b'{"model": "chat-small", "prompt": [1, 2, 3]}')
    assert response.status_code == 200, response.text[:300]


@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
def test_a_body_over_djangos_upload_limit_reaches_the_gateways_checks(gateway, path):
    """Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) is not the gateway's limit (8 MB): a 3 MB
    chat body is judged on its content (here: too long for the model) — it was a 413 naming
    the 8 MB limit, and on /completions Django's own 400 page."""
    content = "x" * (3 * 1024 * 1024)
    body = json.dumps({"model": "chat-small", "messages": [{"role": "user", "content": content}]})
    response = post(gateway, path, body.encode())
    assert response.status_code == 400, response.text[:300]
    assert assert_error_shape(response)["code"] == "context_length_exceeded"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
)
def test_a_bad_body_under_another_content_type_is_still_a_json_error(gateway, content_type):
    response = post(gateway, "/chat/completions", b"model=chat-small&x=1", **{
        "content-type": content_type
    })  # fmt: skip
    assert response.status_code == 400
    assert assert_error_shape(response)["code"] == "invalid_json"
    assert_nothing_held_or_charged(gateway)


def test_a_json_body_is_read_whatever_its_content_type_says(gateway):
    body = json.dumps(valid_body("chat")).encode()
    response = post(gateway, "/chat/completions", body, **{"content-type": "text/plain"})
    assert response.status_code == 200


@pytest.mark.parametrize("raw", [b"\xff\xfe\xfd", b'{"model": "chat-small\xff"}', b"\x00" * 10])
def test_non_utf8_bytes_are_invalid_json(gateway, raw):
    response = post(gateway, "/chat/completions", raw)
    assert response.status_code == 400
    assert assert_error_shape(response)["code"] == "invalid_json"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", PATHS.values())
def test_other_methods_on_post_endpoints_are_405_in_openai_shape(gateway, method, path):
    response = httpx.request(
        method,
        f"{gateway.url}{path}",
        headers={"Authorization": f"Bearer {gateway.secret}"},
        content=json.dumps(valid_body("chat")).encode() if method != "GET" else None,
        timeout=10,
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert assert_error_shape(response)["code"] == "method_not_allowed"
    assert_nothing_held_or_charged(gateway)


@pytest.mark.parametrize("path", ["/models", "/models-plgrid-format", "/../health"])
def test_a_post_to_a_get_endpoint_is_405_in_openai_shape(gateway, path):
    response = post(gateway, path, b"{}")
    assert response.status_code == 405 and response.headers["allow"] == "GET"
    assert_error_shape(response)


@pytest.mark.parametrize(
    "query",
    [
        "model=",
        "model=nope",
        "model=%00",
        "model=chat-small%00",
        "model=%ff%fe",
        "model=%ED%A0%80",
        "model=%C3%A9",
        "model=" + "x" * 8000,
        "model=chat-small&model=nope",
        "model",
        "model=chat-small%20",
        "model[]=chat-small",
        "%ff=1",
    ],
)
def test_health_with_odd_model_queries_answers_200_or_404(gateway, query):
    base = gateway.url.removesuffix("/v1")
    response = httpx.get(f"{base}/health?{query}", timeout=10)
    assert response.status_code in (200, 404), response.text[:300]
    if response.status_code == 404:
        assert assert_error_shape(response)["code"] == "model_not_found"
    else:
        assert response.json()


@pytest.mark.parametrize(
    "authorization",
    [
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer  ",
        b"Bearer \t ",
        b"bearer anv-nope",
        b"Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        b"Bearer " + b"a" * 10_000,
        b"Bearer anv-" + b"0" * 12 + b"A" * 40,
        "Bearer anv-zażółć".encode(),
        "Bearer anv-zażółć".encode("latin-1", "replace"),
        b"Bearer \xff\xfe",
        b"Token SECRET",
    ],
)
def test_odd_authorization_headers_are_401_and_charge_nothing(gateway, authorization):
    # Raw bytes: client libraries refuse to send some of these headers at all.
    for path, endpoint in (("/chat/completions", "chat"), ("/embeddings", "embeddings")):
        body = json.dumps(valid_body(endpoint)).encode()
        answer = raw_exchange(
            gateway,
            f"POST /api/v1{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
            + b"Content-Type: application/json\r\nAuthorization: " + authorization + b"\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body,
        )  # fmt: skip
        head, _, content = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401 "), answer[:300]
        assert json.loads(content)["error"]["code"] == "invalid_api_key"
        assert set(json.loads(content)["error"]) == ERROR_KEYS
    assert_nothing_held_or_charged(gateway)


def test_a_valid_key_with_extra_spaces_still_works(gateway):
    body = json.dumps(valid_body("chat")).encode()
    response = post(gateway, "/chat/completions", body, Authorization=f"Bearer   {gateway.secret}")
    assert response.status_code == 200


def raw_exchange(gateway, request: bytes, *, half_close: bool = False) -> bytes:
    """Send bytes as they are (no client library fixes them up); what came back before the
    server closed the connection (the request says Connection: close), in at most 5 s.
    ``half_close``: shut our side after sending (the server takes it as the client leaving)."""
    host, port = gateway.url.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pytest.fail(f"the server neither answered nor closed: {answer[:300]!r}")
    return answer


def http_request(gateway, body: bytes, content_length: int) -> bytes:
    return (
        b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        + f"Authorization: Bearer {gateway.secret}\r\n".encode()
        + f"Content-Length: {content_length}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


def test_a_body_shorter_than_its_content_length_ends_without_a_hang(gateway):
    body = json.dumps(valid_body("chat")).encode()
    request = http_request(gateway, body, len(body) + 100)
    answer = raw_exchange(gateway, request, half_close=True)
    # The client went away mid-body: the server may close without an answer, but never 5xx.
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:300]
    assert_nothing_held_or_charged(gateway)


def test_a_body_longer_than_its_content_length_is_cut_at_the_length(gateway):
    body = json.dumps(valid_body("chat")).encode()
    answer = raw_exchange(gateway, http_request(gateway, body + b"garbage", len(body) - 3))
    status = answer.split(b"\r\n", 1)[0]
    assert status == b"HTTP/1.1 400 Bad Request", answer[:300]
    assert b'"invalid_json"' in answer
    assert_nothing_held_or_charged(gateway)
