"""The ASGI side of a lean HTTP handler, without a framework: what apps/gateway/handler.py needs
from the protocol, written once and tested on its own.

- ``read_body(receive, limit=…)``: the request body in memory, read no further than the limit,
  so a client can not make the server keep a body of any size (chunked bodies declare no
  length to refuse them by).
- ``CancelOnDisconnect(receive)``: the block it guards is cancelled when the client goes away,
  as Django's handler cancels a view; that cancellation ends at the block, any other goes on.
- ``Headers``: a request's headers as Django's ``request.headers`` has them.
- ``response_headers``, ``send_whole``, ``send_stream``: an answer's head and body as ASGI
  messages, a whole body in one message, a stream's parts each in one as they come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import aclosing

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]


class ClientDisconnected(Exception):
    """The client went away before its request's body was read."""


async def read_body(receive: Receive, *, limit: int) -> bytes:
    """The body, or its first ``limit + 1`` bytes when it is longer (so the caller can tell it
    is over the limit): reading stops there, and what the client still sends is left unread."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        if chunk and size <= limit:
            chunks.append(chunk[: limit + 1 - size])
            size += len(chunk)
        if not message.get("more_body", False) or size > limit:
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class CancelOnDisconnect:
    """``async with CancelOnDisconnect(receive) as watch:`` — once the request's body is read,
    the block is cancelled when ``http.disconnect`` arrives. That cancellation is the block's
    to end: it does not go on past it (``watch.client_left`` says it happened). A cancellation
    from elsewhere (the server shutting down, the client still there) goes on as usual.

    What is left of a body read no further is dropped as it arrives. Any other message is the
    server breaking the protocol: raised at the end of the block (as Django raises it), unless
    the block raised something itself."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.client_left = False
        self._task: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None

    async def __aenter__(self) -> CancelOnDisconnect:
        self._task = asyncio.current_task()
        self._listener = asyncio.ensure_future(self._listen())
        return self

    async def __aexit__(self, kind, error, traceback) -> bool:
        self._listener.cancel()  # before any await: the listener can not cancel the task later
        if self.client_left:
            self._task.uncancel()
            return kind is not None and issubclass(kind, asyncio.CancelledError)
        listener = self._listener
        if kind is None and listener.done() and not listener.cancelled():
            listener.result()  # the protocol error, if any
        return False

    async def _listen(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.client_left = True
                self._task.cancel()
                return
            if message["type"] != "http.request":
                raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")


class Headers(Mapping[str, str]):
    """A request's headers from the ASGI scope, as Django's ``request.headers``: names
    case-insensitive (iterated as ``Content-Type``), a repeated header's values joined with
    ',', names with an underscore left out (Django drops them: they could pose as the same
    name with '-')."""

    __slots__ = ("_store",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        store: dict[str, tuple[str, str]] = {}  # lower-case name → (Title-Case name, value)
        for raw_name, raw_value in raw:
            key = raw_name.decode("latin1").lower()
            if "_" in key:
                continue
            value = raw_value.decode("latin1")
            if key in store:
                value = f"{store[key][1]},{value}"
            store[key] = (key.title(), value)
        self._store = store

    def __getitem__(self, name: str) -> str:
        return self._store[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return repr(dict(self._store.values()))


def response_headers(
    store: Mapping[str, tuple[str, str]],
    *,
    defaults: Iterable[tuple[str, bytes, bytes]] = (),
    length: int | None = None,
) -> RawHeaders:
    """ASGI's header list from ``store`` (lower-case name → (name, value), as Django's response
    headers keep them), with each of ``defaults`` (lower-case name, name, value) the store has
    no value for and, given a ``length``, a Content-Length unless the store has one."""
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in store.values()]
    for key, name, value in defaults:
        if key not in store:
            headers.append((name, value))
    if length is not None and "content-length" not in store:
        headers.append((b"Content-Length", b"%d" % length))
    return headers


async def send_whole(send: Send, status: int, headers: RawHeaders, body: bytes) -> None:
    """A whole answer: one message for its head, one for its body."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_stream(
    send: Send, status: int, headers: RawHeaders, parts: AsyncIterator[bytes]
) -> None:
    """A streamed answer: each part in one message as it comes (``parts`` closed on any exit,
    so whatever produces them is closed within this call), then the end."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    async with aclosing(parts) as content:
        async for part in content:
            await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body"})
