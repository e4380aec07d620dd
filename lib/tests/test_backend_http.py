"""The client to the backends, on real loopback sockets: tiny raw servers for each way an
answer can be framed, stall or break off, and the development backend for the real thing.
Each test runs on asyncio's own loop and on uvloop (what Anvil runs on)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from devbackend.testing import devbackend_stats, devbackend_stats_reset
from lib import backend_http
from lib.backend_http import BackendClient, BackendConnectionError
from tests.waiting import aeventually

Reader, Writer = asyncio.StreamReader, asyncio.StreamWriter
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request) -> Callable[[Awaitable], object]:
    return asyncio.run if request.param == "asyncio" else uvloop.run


class OpenCount:
    """How many at once now, and at most."""

    now = most = 0

    def up(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)


class RawServer:
    """A loopback server running ``handle(server, reader, writer)`` on every connection; it
    keeps the requests it read and counts connections."""

    def __init__(self, handle, *, tls: ssl.SSLContext | None = None) -> None:
        self.handle, self.tls = handle, tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.open = OpenCount()
        self.closed_by_client = asyncio.Event()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}/v1/chat/completions"
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.server.close()

    async def _serve(self, reader: Reader, writer: Writer) -> None:
        self.connections += 1
        self.open.up()
        try:
            await self.handle(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client left, or the test ended
        finally:
            self.open.now -= 1
            writer.close()

    async def request(self, reader: Reader) -> bytes | None:
        """The next request on the connection, or None when the client closed it."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed_by_client.set()
            return None
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1])
        self.requests.append(head + await reader.readexactly(length))
        return self.requests[-1]


def answering(*parts: bytes, close: bool = False):
    """A handler that answers every request with ``parts``, one write each."""

    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        while await server.request(reader) is not None:
            for part in parts:
                writer.write(part)
                await writer.drain()
            if close:
                return

    return handle


def client(**options) -> BackendClient:
    return BackendClient(**{"max_connections": 8, "keepalive": 4, **options})


async def post(backend: BackendClient, url: str, body: bytes = b"{}", **options):
    options = {"secret": "", "connect_timeout": 1, "read_timeout": 2, **options}
    return await backend.post(url, body=body, **options)


def test_it_sends_one_request_and_reads_a_content_length_body_on_one_connection(run):
    async def scenario():
        handle = answering(OK_HEAD + b"X-Answer: Yes\r\nContent-Length: 5\r\n\r\nhello")
        async with RawServer(handle) as server:
            backend = client()
            for _ in range(3):
                async with await post(backend, server.url, b'{"a":1}', secret="s3") as answer:
                    assert (answer.status, await answer.read()) == (200, b"hello")
                    assert answer.headers["x-answer"] == "Yes"
            await backend.close()
            return server

    server = run(scenario())
    assert server.connections == 1 and len(server.requests) == 3
    head, body = server.requests[0].split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    port = server.url.split(":")[2].split("/")[0]
    for header in (
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Accept: application/json",
        "Authorization: Bearer s3",
        "Content-Length: 7",
    ):
        assert f"\r\n{header}".encode() in head
    assert body == b'{"a":1}'


def test_it_sends_no_authorization_without_a_secret(run):
    async def scenario():
        async with RawServer(answering(OK_HEAD + b"Content-Length: 0\r\n\r\n")) as server:
            backend = client()
            (await post(backend, server.url)).release()
            await backend.close()
            return server.requests[0]

    assert b"authorization" not in run(scenario()).lower()


def test_it_decodes_a_chunked_body_split_across_writes(run):
    chunked = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    parts = (chunked + b"5\r\nhel", b"lo\r\n", b"6\r\n world\r\n0\r\n", b"\r\n")

    async def scenario():
        async with RawServer(answering(*parts)) as server:
            backend = client()
            for _ in range(2):
                async with await post(backend, server.url) as answer:
                    assert await answer.read() == b"hello world"
            await backend.close()
            return server.connections

    assert run(scenario()) == 1


def test_it_reads_a_body_ended_by_the_close_and_does_not_reuse_that_connection(run):
    async def scenario():
        handle = answering(b"HTTP/1.1 200 OK\r\n\r\nno ", b"length", close=True)
        async with RawServer(handle) as server:
            backend = client()
            for _ in range(2):
                async with await post(backend, server.url) as answer:
                    assert await answer.read() == b"no length"
            await backend.close()
            return server.connections

    assert run(scenario()) == 2


def test_it_passes_a_500_on_and_keeps_the_connection(run):
    error = b'{"error": {"message": "boom"}}'
    answer_500 = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s"

    async def scenario():
        async with RawServer(answering(answer_500 % (len(error), error))) as server:
            backend = client()
            for _ in range(2):
                async with await post(backend, server.url) as answer:
                    assert (answer.status, await answer.read()) == (500, error)
            await backend.close()
            return server.connections

    assert run(scenario()) == 1


def test_it_reads_a_large_body_whole(run):
    big = bytes(range(256)) * (8 * 1024 * 1024 // 256)

    async def scenario():
        async with RawServer(
            answering(OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(big), big)
        ) as server:
            backend = client()
            async with await post(backend, server.url, big) as answer:
                assert await answer.read() == big
            await backend.close()
            return server.requests[0]

    assert run(scenario()).endswith(big)  # a large request body goes out whole too


def sse_stream(server_events: list[bytes], written: list[int], go_on: asyncio.Event):
    """A streaming handler: one event per chunk, each after the client saw the one before."""

    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        await server.request(reader)
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        for event in server_events:
            go_on.clear()
            written.append(event)
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await go_on.wait()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await server.request(reader)

    return handle


def test_it_yields_each_event_as_it_arrives(run):
    events = [b'data: {"n": %d}\n\n' % n for n in range(5)] + [b"data: [DONE]\n\n"]

    async def scenario():
        written, go_on = [], asyncio.Event()
        async with RawServer(sse_stream(events, written, go_on)) as server:
            backend = client()
            answer = await post(backend, server.url)
            seen = []
            async for line in answer.lines():
                seen.append(line)
                if line == b"\n":  # an event's end: the server has written it and no more
                    assert len(written) == len(seen) // 2
                    go_on.set()
            assert answer.at_eof()
            answer.release()
            await backend.close()
            return seen

    assert run(scenario()) == [line for event in events for line in (event[:-1], b"\n")]


def test_it_retries_once_on_a_pooled_connection_the_backend_closed(run):
    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        await server.request(reader)  # first request on each connection: answered
        writer.write(OK_HEAD + b"Content-Length: 2\r\n\r\nok")
        await server.request(reader)  # the next one: closed unanswered (it went idle)

    async def scenario():
        async with RawServer(handle) as server:
            backend = client()
            for _ in range(3):
                async with await post(backend, server.url) as answer:
                    assert await answer.read() == b"ok"
            await backend.close()
            return server

    server = run(scenario())
    assert (server.connections, len(server.requests)) == (3, 5)


def test_it_retries_no_more_than_once_and_never_on_a_new_connection(run):
    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        if server.connections == 1:
            await server.request(reader)
            writer.write(OK_HEAD + b"Content-Length: 2\r\n\r\nok")
        await server.request(reader)  # then every request: closed unanswered

    async def scenario():
        async with RawServer(handle) as server:
            backend = client()
            (await post(backend, server.url)).release()
            with pytest.raises(BackendConnectionError):
                await post(backend, server.url)  # pooled connection, then a new one
            with pytest.raises(BackendConnectionError):
                await post(backend, server.url)  # a new connection: no retry
            await backend.close()
            return server

    server = run(scenario())
    assert (server.connections, len(server.requests)) == (3, 4)


def test_it_does_not_retry_once_a_byte_of_the_answer_arrived(run):
    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        await server.request(reader)
        writer.write(OK_HEAD + b"Content-Length: 2\r\n\r\nok")
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-")  # and the connection closes

    async def scenario():
        async with RawServer(handle) as server:
            backend = client()
            (await post(backend, server.url)).release()
            with pytest.raises(BackendConnectionError):
                await post(backend, server.url)
            await backend.close()
            return server

    server = run(scenario())
    assert (server.connections, len(server.requests)) == (1, 2)


def test_it_times_out_on_a_backend_that_stalls_in_the_head(run):
    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
        await server.request(reader)  # until the client gives up

    async def scenario():
        async with RawServer(handle) as server:
            backend = client()
            started = asyncio.get_running_loop().time()
            with pytest.raises(TimeoutError):
                await post(backend, server.url, read_timeout=0.3)
            waited = asyncio.get_running_loop().time() - started
            await asyncio.wait_for(server.closed_by_client.wait(), 2)  # not kept
            await backend.close()
            return waited

    # 0.3 s after t is not always t + 0.3 in floats: (t + 0.3) - t can be 0.29999999999995
    assert 0.3 - 1e-9 <= run(scenario()) < 1.5


def test_it_times_out_between_two_events_of_a_stream(run):
    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        await server.request(reader)
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n6\r\ndata:\n\r\n")
        await server.request(reader)

    async def scenario():
        async with RawServer(handle) as server:
            backend = client()
            answer = await post(backend, server.url, read_timeout=0.3)
            assert await answer.readline() == b"data:\n"
            with pytest.raises(TimeoutError):
                await answer.readline()
            answer.release()  # not whole: closed
            await asyncio.wait_for(server.closed_by_client.wait(), 2)
            await backend.close()

    run(scenario())


def test_it_raises_a_connection_error_when_refused_or_garbled(run):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]  # nobody listens there once closed

    async def scenario():
        backend = client()
        with pytest.raises(BackendConnectionError, match="could not connect"):
            await post(backend, f"http://127.0.0.1:{free}/v1/chat/completions")
        async with RawServer(answering(b"SSH-2.0-OpenSSH\r\n\r\n")) as server:
            with pytest.raises(BackendConnectionError, match="not valid HTTP"):
                await post(backend, server.url)
        assert backend._open == 0
        await backend.close()

    run(scenario())


def test_it_keeps_to_the_connection_limit_and_bounds_the_wait(run):
    busy = OpenCount()  # requests being answered, on all servers together

    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        while await server.request(reader) is not None:
            busy.up()
            await asyncio.sleep(0.05)  # a slow answer: requests overlap
            busy.now -= 1
            writer.write(OK_HEAD + b"Content-Length: 2\r\n\r\nok")

    async def fetch(backend: BackendClient, url: str) -> bytes:
        async with await post(backend, url) as answer:
            return await answer.read()

    async def scenario():
        async with RawServer(handle) as server, RawServer(handle) as other:
            backend = client(max_connections=2)
            calls = [fetch(backend, server.url) for _ in range(10)]
            assert await asyncio.gather(*calls) == [b"ok"] * 10
            assert (server.connections, server.open.most) == (2, 2)
            # a second origin: its requests take the first one's idle connections' places
            calls = [fetch(backend, s.url) for s in (server, other) for _ in range(5)]
            assert await asyncio.gather(*calls) == [b"ok"] * 10
            held = await post(backend, server.url)  # not read: keeps its connection
            second = await post(backend, other.url)
            with pytest.raises(TimeoutError, match="no free connection"):
                await post(backend, server.url, read_timeout=0.2)
            second.release()  # not read either: closed, which makes room
            assert await fetch(backend, server.url) == b"ok"
            held.close()
            await backend.close()

    run(scenario())
    assert busy.most == 2


def test_a_request_cancelled_as_its_connection_is_made_leaves_the_limit_whole(run, monkeypatch):
    # The client left in the very turn the backend's connection was made: the connection is
    # closed by the event loop and counted out once, so the limit still holds afterwards.
    busy = OpenCount()

    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        while await server.request(reader) is not None:
            busy.up()
            await asyncio.sleep(0.05)  # a slow answer: requests overlap
            busy.now -= 1
            writer.write(OK_HEAD + b"Content-Length: 2\r\n\r\nok")

    async def fetch(backend: BackendClient, url: str) -> bytes:
        async with await post(backend, url) as answer:
            return await answer.read()

    async def scenario():
        async with RawServer(handle) as server:
            backend = client(max_connections=1)
            posting: list[asyncio.Future] = []

            class Cancelling(backend_http._Connection):
                def connection_made(self, transport) -> None:
                    super().connection_made(transport)
                    posting[0].cancel()

            with monkeypatch.context() as patch:
                patch.setattr(backend_http, "_Connection", Cancelling)
                posting.append(asyncio.ensure_future(post(backend, server.url)))
                with pytest.raises(asyncio.CancelledError):
                    await posting[0]

            def counted_out() -> None:
                assert backend._open == 0, f"the connection counted out: {backend._open} open"

            await aeventually(counted_out)
            assert (
                await asyncio.gather(*(fetch(backend, server.url) for _ in range(4))) == [b"ok"] * 4
            )
            await backend.close()

    run(scenario())
    assert busy.most == 1


def test_it_drops_idle_connections_after_the_keepalive(run):
    async def scenario():
        async with RawServer(answering(OK_HEAD + b"Content-Length: 0\r\n\r\n")) as server:
            backend = client(keepalive=0.2)
            (await post(backend, server.url)).release()
            await asyncio.wait_for(server.closed_by_client.wait(), 2)
            assert backend._open == 0
            await backend.close()

    run(scenario())


def test_closing_mid_stream_closes_the_connection(run):
    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        await server.request(reader)
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
        await server.request(reader)  # the next request, or the client's close

    async def scenario():
        async with RawServer(handle) as server:
            backend = client()
            answer = await post(backend, server.url)
            assert await answer.readline() == b"data: 1\n"
            answer.close()
            await asyncio.wait_for(server.closed_by_client.wait(), 2)
            assert backend._open == 0
            await backend.close()

    run(scenario())


def test_it_stops_reading_while_a_stream_is_not_read(run):
    line = b"data: " + b"x" * 1017 + b"\n"  # 1 KiB
    total = 32 * 1024  # lines: 32 MiB, more than the kernel's socket buffers hold

    async def handle(server: RawServer, reader: Reader, writer: Writer) -> None:
        await server.request(reader)
        writer.write(OK_HEAD + b"Content-Length: %d\r\n\r\n" % (len(line) * total))
        server.written = 0
        for _ in range(total // 1024):
            writer.write(line * 1024)
            await writer.drain()
            server.written += 1024

    async def scenario():
        async with RawServer(handle) as server:
            backend = client()
            answer = await post(backend, server.url)
            assert await answer.readline() == line
            await asyncio.sleep(0.5)  # what is tested: in this while, the server sends no more
            stuck_at = server.written  # than the socket buffers hold (not the 32 MiB)
            count = 1
            async for got in answer.lines():
                assert got == line
                count += 1
            answer.release()
            await backend.close()
            return stuck_at, count

    stuck_at, count = run(scenario())
    assert stuck_at < total // 2 and count == total


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    options = "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    command = [openssl, *options.split(), "-keyout", key, "-out", cert]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603
    return key, cert


def test_it_speaks_https_and_refuses_an_unverified_backend(run, certificate):
    key, cert = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def scenario():
        handle = answering(OK_HEAD + b"Content-Length: 6\r\n\r\nsecret")
        async with RawServer(handle, tls=server_tls) as server:
            trusting = client(tls=ssl.create_default_context(cafile=str(cert)))
            for _ in range(2):
                async with await post(trusting, server.url) as answer:
                    assert await answer.read() == b"secret"
            await trusting.close()
            default = client()
            with pytest.raises(BackendConnectionError):
                await post(default, server.url)
            await default.close()
            return server.connections

    assert run(scenario()) == 1  # one verified connection, reused (the refused handshake
    # never reached the server's handler)


CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}


def test_it_talks_to_the_development_backend(run, devbackend):
    url = f"{devbackend}/v1/chat/completions"

    async def scenario():
        backend = client()
        async with await post(backend, url, json.dumps(CHAT).encode()) as answer:
            assert answer.status == 200
            assert json.loads(await answer.read())["usage"]["completion_tokens"] == 8
        stream = {**CHAT, "stream": True}
        async with await post(backend, url, json.dumps(stream).encode()) as answer:
            lines = [line async for line in answer.lines()]
        assert lines[-2:] == [b"data: [DONE]\n", b"\n"] and len(lines) == 2 * 11
        failing = {**CHAT, "model": "chat-small@fault=error-500"}
        async with await post(backend, url, json.dumps(failing).encode()) as answer:
            assert answer.status == 500 and b"error" in await answer.read()
        dropping = {**stream, "model": "chat-small@fault=drop-after:3"}
        answer = await post(backend, url, json.dumps(dropping).encode())
        with pytest.raises(BackendConnectionError, match="broke off"):
            async for _ in answer.lines():
                pass
        answer.close()
        await backend.close()

    run(scenario())


def test_closing_a_stream_stops_the_development_backend(run, devbackend):
    url = f"{devbackend}/v1/chat/completions"
    slow = {**CHAT, "model": "chat-small@tokens-per-second=50", "max_tokens": 200, "stream": True}
    devbackend_stats_reset(devbackend)

    async def scenario():
        backend = client()
        answer = await post(backend, url, json.dumps(slow).encode())
        assert (await answer.readline()).startswith(b"data: {")
        answer.close()
        await backend.close()

        async def stopped() -> dict[str, int] | bool:
            stats = await asyncio.to_thread(devbackend_stats, devbackend)
            return stats["in_flight"] == 0 and stats

        return await aeventually(stopped, what="the backend's stream stopped")

    stats = run(scenario())
    assert stats["cancelled"] == 1 and stats["in_flight"] == 0
