"""The body limit (``lib.body_limit``), driven as an ASGI server drives it."""

from __future__ import annotations

import asyncio

from lib.body_limit import BodyLimit


def http_scope(length: int | None = None, path: str = "/form") -> dict:
    headers = [(b"host", b"127.0.0.1")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


def chunks(count: int, size: int):
    """A ``receive`` giving ``count`` chunks of ``size`` bytes as one body; ``receive.given``
    counts the bytes it gave."""
    left = [count]

    async def receive() -> dict:
        if left[0] == 0:
            await asyncio.Event().wait()
        left[0] -= 1
        receive.given += size
        return {"type": "http.request", "body": b"x" * size, "more_body": left[0] > 0}

    receive.given = 0
    return receive


class Sent(list):
    async def __call__(self, message: dict) -> None:
        self.append(message)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self if m["type"] == "http.response.start")

    def header(self, name: bytes) -> bytes | None:
        start = next(m for m in self if m["type"] == "http.response.start")
        return dict(start["headers"]).get(name)


async def reading_app(scope, receive, send) -> None:
    """Reads the body whole (as Django's handler does), answers 200 with its size; on a
    disconnect it stops and answers nothing."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            reading_app.disconnected = True
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%d" % size})


def run(scope: dict, receive, limit: int = 1000) -> Sent:
    sent = Sent()
    reading_app.disconnected = False
    asyncio.run(BodyLimit(reading_app, limit=lambda scope: limit)(scope, receive, sent))
    return sent


def test_a_declared_length_over_the_limit_is_refused_without_reading_anything():
    receive = chunks(300, 1000)
    sent = run(http_scope(length=300_000), receive)
    assert sent.status == 413
    assert sent.header(b"connection") == b"close"
    assert receive.given == 0


def test_a_chunked_body_is_read_no_further_than_past_the_limit():
    receive = chunks(300, 100)  # 30 kB in all, no length
    sent = run(http_scope(), receive)
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]
    assert receive.given == 1100  # the chunk that went over, no further
    assert reading_app.disconnected  # the application stopped reading, answered nothing


def test_bodies_within_the_limit_reach_the_application_whole():
    sent = run(http_scope(length=1000), chunks(10, 100))
    assert (sent.status, sent[-1]["body"]) == (200, b"1000")
    sent = run(http_scope(), chunks(10, 100))
    assert (sent.status, sent[-1]["body"]) == (200, b"1000")


def test_no_limit_and_other_scopes_pass_through():
    sent = Sent()
    app = BodyLimit(reading_app, limit=lambda scope: None)
    asyncio.run(app(http_scope(length=10**9), chunks(3, 100), sent))
    assert (sent.status, sent[-1]["body"]) == (200, b"300")
    seen = []

    async def lifespan_app(scope, receive, send) -> None:
        seen.append(scope["type"])

    asyncio.run(BodyLimit(lifespan_app, limit=lambda scope: 1)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def test_the_answer_comes_from_too_large():
    def too_large(scope, limit):
        return b"application/json", b'{"limit": %d}' % limit

    sent = Sent()
    app = BodyLimit(reading_app, limit=lambda scope: 10, too_large=too_large)
    asyncio.run(app(http_scope(length=11), chunks(1, 11), sent))
    assert sent.status == 413
    assert sent.header(b"content-type") == b"application/json"
    assert sent[-1]["body"] == b'{"limit": 10}'
