"""The ASGI side of the lean handler (``lib.asgi``), driven as an ASGI server drives it."""

from __future__ import annotations

import asyncio

import pytest

from lib.asgi import (
    CancelOnDisconnect,
    ClientDisconnected,
    Headers,
    read_body,
    response_headers,
    send_stream,
    send_whole,
)


def chunked(chunks: list[bytes], then: list[dict] = ()):
    """A ``receive`` giving ``chunks`` as one body, then the ``then`` messages, then waiting
    for ever; ``receive.calls`` counts its calls, ``receive.drained`` is set once it has given
    every message, ``receive.asked_more`` once it is called after that."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ] + list(then)

    async def receive() -> dict:
        receive.calls += 1
        if messages:
            message = messages.pop(0)
            if not messages:
                receive.drained.set()
            return message
        receive.asked_more.set()
        await asyncio.Event().wait()

    receive.calls, receive.drained, receive.asked_more = 0, asyncio.Event(), asyncio.Event()
    return receive


def test_it_reads_a_body_whole_in_one_or_many_messages():
    assert asyncio.run(read_body(chunked([b'{"a": 1}']), limit=100)) == b'{"a": 1}'
    assert asyncio.run(read_body(chunked([b'{"a"', b"", b": 1}"]), limit=100)) == b'{"a": 1}'
    assert asyncio.run(read_body(chunked([b""]), limit=100)) == b""
    assert asyncio.run(read_body(chunked([b"x" * 100]), limit=100)) == b"x" * 100


def test_it_stops_reading_a_chunked_body_past_the_limit():
    # A chunked body declares no length: at most the limit + 1 bytes are kept in memory and
    # reading stops there (Django's handler spooled any size to a temporary file).
    receive = chunked([b"x" * 65_536] * 1_000)  # 65 MB
    body = asyncio.run(read_body(receive, limit=1_000_000))
    assert len(body) == 1_000_001  # one byte over: the caller answers 413
    assert receive.calls == 16  # 16 chunks of 64 KiB reach the limit; 984 were never read


def test_it_raises_when_the_client_leaves_during_the_body():
    messages = [
        {"type": "http.request", "body": b"x", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict:
        return messages.pop(0)

    with pytest.raises(ClientDisconnected):
        asyncio.run(read_body(receive, limit=100))


async def _serve(receive, work):
    """What a handler does: ``work()`` inside the watch; returns what happened."""
    async with CancelOnDisconnect(receive) as watch:
        return "done", await work(), watch.client_left
    return "cut", None, watch.client_left


def test_a_disconnect_cancels_the_block_and_ends_there():
    seen = []

    async def scenario():
        started, gone = asyncio.Event(), asyncio.Event()

        async def work():
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen.append("cancelled")  # a relay closes its backend stream here
                raise

        async def receive() -> dict:
            await gone.wait()
            return {"type": "http.disconnect"}

        task = asyncio.ensure_future(_serve(receive, work))
        await started.wait()
        gone.set()
        outcome = await asyncio.wait_for(task, 5)
        return outcome, task.cancelling()

    assert asyncio.run(scenario()) == (("cut", None, True), 0)  # not left cancelling
    assert seen == ["cancelled"]


def test_it_drops_what_is_left_of_a_body_and_leaves_a_finished_block_alone():
    leftovers = [{"type": "http.request", "body": b"rest", "more_body": True}] * 3

    async def scenario():
        receive = chunked([], then=leftovers)

        async def work():
            await receive.asked_more.wait()  # the listener took every leftover, asks for more
            return "answer"

        return await _serve(receive, work), receive.calls

    assert asyncio.run(scenario()) == (("done", "answer", False), 4)


def test_it_does_not_swallow_a_cancellation_from_elsewhere():
    async def scenario():
        started = asyncio.Event()

        async def work():
            started.set()
            await asyncio.Event().wait()

        task = asyncio.ensure_future(_serve(chunked([]), work))
        await started.wait()
        task.cancel()  # the server shutting down, the client still there
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_it_raises_a_message_that_breaks_the_protocol():
    async def scenario():
        receive = chunked([], then=[{"type": "websocket.connect"}])

        async def work():
            await receive.drained.wait()  # the listener has seen it

        await _serve(receive, work)

    with pytest.raises(AssertionError, match=r"websocket\.connect"):
        asyncio.run(scenario())


RAW = [
    (b"host", b"127.0.0.1:8000"),
    (b"authorization", b"Bearer anvil-abc"),
    (b"x-tag", b"one"),
    (b"X-Tag", b"two"),
    (b"x_tag", b"spoofed"),  # names with '_' are dropped: they could pose as x-tag
]


def test_headers_are_case_insensitive_and_joined_as_django_has_them():
    headers = Headers(RAW)
    assert dict(headers) == {
        "Host": "127.0.0.1:8000",
        "Authorization": "Bearer anvil-abc",
        "X-Tag": "one,two",
    }
    assert headers["AUTHORIZATION"] == headers.get("authorization") == "Bearer anvil-abc"
    assert headers.get("x-missing") is None
    assert "X-TAG" in headers and "x_tag" not in headers
    assert len(headers) == 3
    with pytest.raises(KeyError):
        headers["x-missing"]


def test_response_headers_add_the_defaults_and_a_length_where_missing():
    store = {
        "content-type": ("Content-Type", "application/json"),
        "x-frame-options": ("X-Frame-Options", "SAMEORIGIN"),  # its own value is kept
    }
    defaults = [
        ("x-frame-options", b"X-Frame-Options", b"DENY"),
        ("x-content-type-options", b"X-Content-Type-Options", b"nosniff"),
    ]
    assert response_headers(store, defaults=defaults, length=12) == [
        (b"Content-Type", b"application/json"),
        (b"X-Frame-Options", b"SAMEORIGIN"),
        (b"X-Content-Type-Options", b"nosniff"),
        (b"Content-Length", b"12"),
    ]
    own_length = {"content-length": ("Content-Length", "3")}
    assert response_headers(own_length, length=12) == [(b"Content-Length", b"3")]
    assert response_headers(store) == response_headers(store, length=None)[:2]


def test_a_whole_answer_is_two_messages():
    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(send_whole(send, 200, [(b"X-A", b"1")], b"body"))
    assert sent == [
        {"type": "http.response.start", "status": 200, "headers": [(b"X-A", b"1")]},
        {"type": "http.response.body", "body": b"body"},
    ]


def test_a_stream_sends_each_part_as_it_comes_and_closes_them_on_any_exit():
    closed = []

    async def parts():
        try:
            yield b"data: 1\n\n"
            yield b"data: 2\n\n"
        finally:
            closed.append(True)

    sent = []

    async def send(message):
        sent.append(message.get("body"))

    asyncio.run(send_stream(send, 200, [], parts()))
    assert sent == [None, b"data: 1\n\n", b"data: 2\n\n", None]

    async def failing(message):  # the client is gone: the server's send raises
        if message.get("body"):
            raise OSError("gone")

    closed.clear()
    with pytest.raises(OSError):
        asyncio.run(send_stream(failing, 200, [], parts()))
    assert closed == [True]  # closed within the call, not later by the loop's finaliser
