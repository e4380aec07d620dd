"""One body limit for every portal path (portal/asgi.py, lib/body_limit.py): a 300 MB body is
refused with 413 before the server reads 2 MB of it, on a real uvicorn on loopback.

The body is streamed from one 64 kB buffer, never built in memory. What the server read is
counted where uvicorn hands the body to Anvil's application (uvicorn itself stops reading
from the socket while its buffer holds more than 64 kB the application has not taken)."""

from __future__ import annotations

import select
import socket
import time

import pytest

from tests.servers import drop_server_connections, start_uvicorn

BODY_BYTES = 300 * 1024 * 1024
PIECE = b"a" * 65536
MB = 1024 * 1024


@pytest.fixture
def counted_server(transactional_db):
    """Anvil's ASGI application under uvicorn; ``.read`` counts the body bytes it took."""
    from portal.asgi import application

    read = [0]

    async def counting(scope, receive, send):
        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                read[0] += len(message.get("body", b""))
            return message

        await application(scope, counted_receive, send)

    running = start_uvicorn(counting)
    running.read = read
    yield running
    running.stop()
    drop_server_connections()


def post_huge(url: str, path: str, *, chunked: bool) -> tuple[int, int]:
    """POSTs a 300 MB body to ``path`` until the server answers or closes: (the answer's
    status, or 0 for none; the body bytes the client managed to send)."""
    host, port = url.removeprefix("http://").split(":")
    framing = (
        b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % BODY_BYTES
    )
    head = (
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        % (path.encode(), host.encode())
        + framing
        + b"\r\n"
    )
    piece = b"%x\r\n%s\r\n" % (len(PIECE), PIECE) if chunked else PIECE
    sent, answer = 0, b""
    deadline = time.monotonic() + 30
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        while sent < BODY_BYTES and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(piece)
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
        sock.settimeout(10)
        try:
            answer = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    "path", ["/accounts/login/", "/api/v1/management/api_keys/create"], ids=["login", "mgmt"]
)
def test_a_300_mb_body_gets_413_before_2_mb_are_read(counted_server, path, chunked):
    status, sent = post_huge(counted_server.url, path, chunked=chunked)
    assert status == 413
    assert counted_server.read[0] < 2 * MB
    assert sent < 64 * MB  # the client was stopped, far from the 300 MB


def test_the_portal_takes_bodies_up_to_its_limit(counted_server, settings):
    """Below the limit the request reaches the view (the login page's CSRF check: 403)."""
    import httpx

    body = b"login=someone&password=" + b"x" * (settings.MAX_BODY_BYTES - 100)
    answer = httpx.post(
        f"{counted_server.url}/accounts/login/",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 403  # no CSRF token: the view's answer, not the limit's
    too_big = body + b"x" * 200
    answer = httpx.post(f"{counted_server.url}/accounts/login/", content=too_big)
    assert answer.status_code == 413


def test_the_api_s_413_is_in_its_error_shape(counted_server, settings):
    import httpx

    too_big = b"{}" + b" " * settings.MAX_BODY_BYTES
    answer = httpx.post(f"{counted_server.url}/api/v1/management/api_keys/create", content=too_big)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"
    assert str(settings.MAX_BODY_BYTES) in answer.json()["error"]["message"]
