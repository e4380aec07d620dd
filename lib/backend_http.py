"""A minimal HTTP/1.1 client to the inference backends: asyncio protocols, llhttp parsing
(httptools), keep-alive connections pooled per (host, port, TLS).

Why not aiohttp or httpx: on the gateway's path both cost more than its targets leave room
for. aiohttp takes about three times this client's CPU per request and hands over a paced
stream's first line later; httpx's CPU per request is about twenty times this client's
(``python -m bench.backend_client``; README.md, "Infrastructure: what is ours and why", has the
figures).

It does what the relay needs and no more: a POST of a JSON body, head and body written in one
``transport.write``; then the answer's status and headers (names in lower case), and its body
whole (``read()``) or line by line as it arrives (``async for line in response.lines()``, for
server-sent events: a line is handed over as soon as its bytes are in, never held back for
later ones). Bodies framed by Content-Length, chunked or ended by the connection's close.

- At most ``max_connections`` connections in all; the wait for a free one lasts at most the
  read timeout. A connection idle for ``keepalive`` seconds is closed.
- Connecting takes at most ``connect_timeout`` and every wait for more of an answer at most
  ``read_timeout``, else TimeoutError. Any other failure to reach the backend or to receive a
  whole, well-formed answer is a BackendConnectionError.
- A pooled connection the backend closed while it sat idle shows as a request that fails
  before any byte of answer: that request is sent once more, on a new connection. Never after
  a byte of the answer arrived, and never when a new connection failed.
- A connection goes back to the pool only when its answer was received whole and both sides
  allow keep-alive; ``close()`` drops it (the backend sees the disconnect and stops).
- Reading from the socket pauses while more than HIGH_WATER bytes of a streamed answer wait
  to be read.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024

Origin = tuple[str, int, bool]  # host, port, TLS


class BackendConnectionError(ConnectionError):
    """The backend could not be reached, or broke off or garbled its answer."""


@dataclass(frozen=True)
class _Target:
    origin: Origin
    head: bytes  # the request head up to the value of Content-Length


@functools.lru_cache(maxsize=256)
def _target(url: str, secret: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackendConnectionError("the backend's URL is not an http(s) URL")
    if any(c in secret for c in "\r\n\0"):
        raise BackendConnectionError("the backend's secret can not be sent in a header")
    tls = parts.scheme == "https"
    origin = (parts.hostname, parts.port or (443 if tls else 80), tls)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.netloc.rpartition('@')[2]}",
        "Content-Type: application/json",
        "Accept: application/json",
    ]
    if secret:
        lines.append(f"Authorization: Bearer {secret}")
    head = "\r\n".join(lines).encode("latin-1") + b"\r\nContent-Length: "
    return _Target(origin=origin, head=head)


class BackendResponse:
    """One answer: ``status``, ``headers``, then ``read()`` or ``lines()``; finally
    ``release()`` (``async with`` does it) or ``close()``."""

    __slots__ = (
        "_buffer",
        "_complete",
        "_connection",
        "_deadline",
        "_error",
        "_keep_alive",
        "_loop",
        "_paused",
        "_read_timeout",
        "_scanned",
        "_timer",
        "_waiter",
        "_whole",
        "headers",
        "status",
    )

    def __init__(self, connection: _Connection, read_timeout: float) -> None:
        self.status = 0  # 0 until the head is in
        self.headers: dict[str, str] = {}
        self._connection: _Connection | None = connection  # None once released or closed
        self._loop = connection.loop
        self._read_timeout = read_timeout
        self._buffer = bytearray()
        self._scanned = 0  # how much of the buffer holds no line end
        self._complete = False
        self._keep_alive = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._deadline = 0.0  # of the current wait
        self._timer: asyncio.TimerHandle | None = None  # at or before the deadline
        self._paused = False
        self._whole = False  # read(): the whole body is wanted, no back-pressure

    async def __aenter__(self) -> BackendResponse:
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.release()

    async def read(self) -> bytes:
        """The rest of the body, once all of it is in."""
        self._whole = True
        while not self._complete:
            await self._wait()
        data = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        return data

    async def readline(self) -> bytes:
        """The next line with its b"\\n" as soon as it is in (the body's end may have none);
        b"" at the end."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(buffer[: end + 1])
                del buffer[: end + 1]
                self._scanned = 0
                if self._paused and len(buffer) < LOW_WATER:
                    self._resume()
                return line
            if self._complete:
                line = bytes(buffer)
                buffer.clear()
                return line
            self._scanned = len(buffer)
            await self._wait()

    def lines(self) -> _Lines:
        return _Lines(self)

    def at_eof(self) -> bool:
        return self._complete and not self._buffer

    def release(self) -> None:
        """Back to the pool when the answer is in whole and keep-alive allowed; else close."""
        connection = self._connection
        if connection is None:
            return
        if not (self._complete and self._keep_alive and self._error is None):
            self.close()
            return
        self._stop_timer()
        if self._paused:
            self._resume()  # to notice when the backend closes it while idle
        self._connection = connection.response = None
        connection.pool._put_idle(connection)

    def close(self) -> None:
        """Drop the connection: the backend sees the disconnect."""
        self._stop_timer()
        connection = self._connection
        if connection is not None:
            self._connection = connection.response = None
            connection.pool._discard(connection)

    # what the connection reports
    def _header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def _feed(self, body: bytes) -> None:
        self._buffer += body
        if len(self._buffer) > HIGH_WATER and not (self._whole or self._paused):
            self._paused = True
            self._connection.transport.pause_reading()
        self._wake()

    def _end(self, keep_alive: bool) -> None:
        self._complete, self._keep_alive = True, keep_alive
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if not self._complete:
            self._error = error
        self._keep_alive = False
        self._wake()

    def _lost(self, exc: BaseException | None) -> None:
        """The connection closed: the end of a body framed by the close, else a failure."""
        if self._complete:
            return
        if exc is None and self.status and self._framed_by_close():
            self._end(keep_alive=False)
        elif self.status:
            self._fail(BackendConnectionError("the backend broke off its answer"))
        else:
            self._fail(BackendConnectionError("the backend closed the connection unanswered"))

    def _framed_by_close(self) -> bool:
        encoding = self.headers.get("transfer-encoding", "").lower()
        return "content-length" not in self.headers and "chunked" not in encoding

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        """Until more of the answer arrives, it ends or fails: at most the read timeout."""
        if self._error is not None:
            raise self._error
        if self._connection is None:
            raise BackendConnectionError("the answer was closed before its end")
        if self._paused:
            self._resume()  # the reader wants more than the buffer holds
        waiter = self._waiter = self._loop.create_future()
        self._deadline = self._loop.time() + self._read_timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
        try:
            await waiter
        except TimeoutError:
            self._keep_alive = False
            raise
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _check_deadline(self) -> None:
        """One timer serves many waits (a stream waits once an event): when it fires early
        for the current wait it is set again for that wait's deadline."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
        else:
            message = f"the backend sent nothing for {self._read_timeout:g} s"
            waiter.set_exception(TimeoutError(message))

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _resume(self) -> None:
        self._paused = False
        connection = self._connection
        if connection is not None and not connection.transport.is_closing():
            connection.transport.resume_reading()


class _Lines:
    """``async for line in response.lines()`` (a plain iterator: one dropped unfinished
    needs no finalising)."""

    __slots__ = ("response",)

    def __init__(self, response: BackendResponse) -> None:
        self.response = response

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> bytes:
        line = await self.response.readline()
        if not line:
            raise StopAsyncIteration
        return line


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: BackendClient, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: BackendResponse | None = None
        self.reused = False  # taken from the pool at least once
        self.answered = False  # a byte of the current answer arrived
        self.idle_timer: asyncio.TimerHandle | None = None
        self.discarded = False

    async def send(self, request: bytes, read_timeout: float) -> BackendResponse:
        """Write the request; return the answer once its head is in."""
        response = self.response = BackendResponse(self, read_timeout)
        self.answered = False
        try:
            if self.transport.is_closing():
                raise BackendConnectionError("the backend closed the connection unanswered")
            self.transport.write(request)
            while not response.status:
                await response._wait()
        except BaseException:
            response.close()
            raise
        return response

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # nothing was asked: the connection can not be trusted
            self.pool._discard(self)
            return
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            response._fail(BackendConnectionError("the backend's answer is not valid HTTP/1.1"))
            self.pool._discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.response is not None:
            self.response._lost(exc)
        self.pool._discard(self)

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.response.status:
            raise BackendConnectionError("the backend sent a second answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response._header(name, value)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (1xx): the real one follows
            self.response.headers = {}
            return
        self.response.status = status
        self.response._wake()

    def on_body(self, body: bytes) -> None:
        self.response._feed(body)

    def on_message_complete(self) -> None:
        if self.response.status:
            self.response._end(self.parser.should_keep_alive())


class BackendClient:
    """Pooled keep-alive connections for one event loop."""

    def __init__(
        self, *, max_connections: int, keepalive: float, tls: ssl.SSLContext | None = None
    ) -> None:
        """``tls``: for https backends (default: verified against the system's CAs)."""
        self.max_connections = max_connections
        self.keepalive = keepalive
        self.closed = False
        self._open = 0  # connections counted against the limit: connecting, busy or idle
        self._connections: set[_Connection] = set()
        self._idle: dict[Origin, list[_Connection]] = {}  # most recently used last
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._tls = tls

    async def post(
        self, url: str, *, body: bytes, secret: str, connect_timeout: float, read_timeout: float
    ) -> BackendResponse:
        """POST ``body`` (JSON) and return the answer with its head read."""
        target = _target(url, secret)
        request = b"".join((target.head, b"%d\r\n\r\n" % len(body), body))
        connection = await self._acquire(target.origin, connect_timeout, read_timeout)
        try:
            return await connection.send(request, read_timeout)
        except BackendConnectionError:
            if not connection.reused or connection.answered:
                raise
        # the backend had closed this pooled connection: once more, on a new one
        connection = await self._acquire(target.origin, connect_timeout, read_timeout, new=True)
        return await connection.send(request, read_timeout)

    async def close(self) -> None:
        self.closed = True
        for connection in list(self._connections):
            self._discard(connection)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(BackendConnectionError("the backend client is closed"))

    async def _acquire(
        self, origin: Origin, connect_timeout: float, read_timeout: float, *, new: bool = False
    ) -> _Connection:
        deadline = None
        while True:
            if self.closed:
                raise BackendConnectionError("the backend client is closed")
            connection = None if new else self._pop_idle(origin)
            if connection is not None:
                return connection
            if self._open < self.max_connections or self._close_an_idle_one():
                return await self._connect(origin, connect_timeout)
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + read_timeout
            await self._wait_for_room(deadline, read_timeout)

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        host, port, tls = origin
        self._open += 1
        loop = asyncio.get_running_loop()
        connection = _Connection(self, origin)
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: connection, host, port, ssl=self._tls_context(tls)
                )
        except BaseException as exc:
            # Counted out here, once: a connection made just before a cancellation is closed
            # (its connection_lost then discards nothing more).
            connection.discarded = True
            if connection.transport is not None:
                connection.transport.close()
            self._open -= 1
            self._wake_one()
            if isinstance(exc, TimeoutError):
                message = f"no connection to the backend {host}:{port} within {timeout:g} s"
                raise TimeoutError(message) from None
            if isinstance(exc, OSError):
                reason = exc.strerror or type(exc).__name__
                message = f"could not connect to the backend {host}:{port} ({reason})"
                raise BackendConnectionError(message) from exc
            raise
        self._connections.add(connection)
        return connection

    def _tls_context(self, tls: bool) -> ssl.SSLContext | None:
        if tls and self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls if tls else None

    async def _wait_for_room(self, deadline: float, read_timeout: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._wake_one()  # woken but not going on: the turn passes to the next
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                message = f"no free connection to the backends within {read_timeout:g} s"
                raise TimeoutError(message) from None
            raise

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _pop_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            connection.idle_timer.cancel()
            connection.idle_timer = None
            if connection.transport.is_closing():
                self._discard(connection)
                continue
            connection.reused = True
            return connection
        return None

    def _close_an_idle_one(self) -> bool:
        """Make room under the limit by closing the longest idle connection of any origin."""
        for idle in self._idle.values():
            if idle:
                self._discard(idle[0])
                return True
        return False

    def _put_idle(self, connection: _Connection) -> None:
        if connection.discarded:
            return
        if self.closed or connection.transport.is_closing():
            self._discard(connection)
            return
        connection.idle_timer = connection.loop.call_later(
            self.keepalive, self._discard, connection
        )
        self._idle.setdefault(connection.origin, []).append(connection)
        self._wake_one()

    def _discard(self, connection: _Connection) -> None:
        """Close the connection and count it out; a waiter may now connect."""
        if connection.discarded:
            return
        connection.discarded = True
        self._open -= 1
        self._connections.discard(connection)
        if connection.idle_timer is not None:
            connection.idle_timer.cancel()
            connection.idle_timer = None
            self._idle[connection.origin].remove(connection)
        connection.transport.close()
        self._wake_one()
