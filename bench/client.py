"""A minimal keep-alive HTTP/1.1 load client: asyncio protocols, llhttp (httptools) parsing,
requests pre-encoded once. Its overhead per request is a few tens of microseconds, far below
httpx's, so the figures are the servers' and not the client's.

``load_run`` sends non-streaming requests over ``concurrency`` connections and returns their
latencies; ``stream_once`` sends one streaming request and records when each server-sent event
arrived and in which socket read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httptools

clock = time.perf_counter


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    path: str
    token: str | None = None

    def request(self, body: bytes) -> bytes:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Response:
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    reads: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival, body bytes)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future | None = None
        self.response = Response()
        self.record_reads = False
        self.now = 0.0

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.now = clock()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(exc)

    def connection_lost(self, exc) -> None:
        self._finish(exc or ConnectionError("connection closed"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if self.record_reads:
            self.response.reads.append((self.now, body))
        else:
            self.response.body += body

    def on_message_complete(self) -> None:
        self.response.status = self.parser.get_status_code()
        self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        if self.done is not None and not self.done.done():
            if exc is None:
                self.done.set_result(self.response)
            else:
                self.done.set_exception(exc)

    async def send(self, raw: bytes, *, record_reads: bool = False) -> Response:
        self.response = Response()
        self.record_reads = record_reads
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.done

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int) -> _Connection:
    _, protocol = await asyncio.get_running_loop().create_connection(_Connection, "127.0.0.1", port)
    return protocol


@dataclass
class LoadResult:
    latencies: list[float]  # seconds, successful requests only
    errors: dict[str, int]
    elapsed: float  # wall seconds for the whole run

    @property
    def ok(self) -> int:
        return len(self.latencies)


async def load_run(
    *, target: Target, body: bytes, concurrency: int, count: int, seconds: float | None = None
) -> LoadResult:
    """``count`` requests (or as many as ``seconds`` allow, whichever ends first),
    ``concurrency`` at a time, each worker on its own connection."""
    raw = target.request(body)
    connections = [await connect(target.port) for _ in range(concurrency)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    remaining = count
    deadline = clock() + seconds if seconds else float("inf")

    async def worker(connection: _Connection) -> None:
        nonlocal remaining
        while remaining > 0 and clock() < deadline:
            remaining -= 1
            started = clock()
            try:
                response = await connection.send(raw)
            except (OSError, httptools.HttpParserError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                connection = await connect(target.port)
                connections.append(connection)
                continue
            if response.status == 200:
                latencies.append(connection.now - started)
            else:
                errors[str(response.status)] = errors.get(str(response.status), 0) + 1

    started = clock()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    return LoadResult(latencies=latencies, errors=errors, elapsed=clock() - started)


@dataclass
class StreamRecord:
    status: int
    started: float
    events: list[tuple[float, int, bytes]]  # (arrival, index of the socket read, event bytes)


def sse_events(reads: list[tuple[float, bytes]]) -> list[tuple[float, int, bytes]]:
    """Split the reads into events (blank-line separated), each stamped with the arrival of
    the read that completed it."""
    events, buffer = [], b""
    for index, (arrival, data) in enumerate(reads):
        buffer += data
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            events.append((arrival, index, event))
    return events


async def stream_once(connection: _Connection, *, target: Target, body: bytes) -> StreamRecord:
    raw = target.request(body)
    started = clock()
    response = await connection.send(raw, record_reads=True)
    return StreamRecord(status=response.status, started=started, events=sse_events(response.reads))
