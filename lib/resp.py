"""A small asyncio Redis client for the gateway's hot path: one pipelined connection per event
loop and Redis URL.

Why not ``redis.asyncio`` (which parses with hiredis too): per command it takes a connection
from its pool, so commands sent side by side go out on separate connections, each its own
write and read here and in Redis, and its Python layers cost a few times this client's CPU per
command (``python -m bench.redis_client``; README.md, "Infrastructure: what is ours and why",
has the figures). Here a command is packed by ``hiredis.pack_command``, written at once to the
one connection, and its reply parsed by ``hiredis.Reader`` in ``data_received`` and handed to
the caller's future. Everything else (sync code, pub/sub) stays on redis-py.

How it works:

* Redis answers the commands of a connection in the order it received them, so the
  connection keeps a FIFO of futures: a command appends its future as it is queued, each
  parsed reply resolves the oldest one. Any number of concurrent callers share the
  connection (pipelining), each getting its own reply.
* The commands queued in one turn of the event loop are written together, at the end of that
  turn (one ``write``: one system call here and one read in Redis, whose replies then tend to
  come back in one read too). Commands sent side by side (the gateway's key-cache ``GET`` and
  slot script) cost one round trip instead of two.
* A caller that is cancelled (or whose ``timeout`` passed) leaves its future in the FIFO: its
  reply is still read and then dropped, so it can never be taken for a later command's reply.
* Error replies are raised as :class:`ReplyError` (a ``redis.exceptions.ResponseError``); a
  lost connection fails every waiting command with :class:`RespConnectionError` (a
  ``redis.exceptions.ConnectionError``); a connect or reply timeout raises
  :class:`RespTimeoutError` (a ``redis.exceptions.TimeoutError``). So the ``except
  RedisError`` clauses written for redis-py catch them all.
* The connection is opened by the first command on a loop, with ``AUTH`` and ``SELECT`` from
  the URL (``redis://``, ``rediss://`` or ``unix://``, parsed as redis-py parses them), and
  again by the first command after it was lost. A reply timeout closes the connection (the
  commands behind the late reply could only wait as long), as redis-py does with a socket
  timeout.
* The connection is closed when its event loop shuts down (``asyncio.run`` and uvicorn
  cancel every task at the end; a keeper task closes it then), so none outlives its loop.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import ssl
import weakref

import hiredis
from redis import exceptions
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

from lib.aio import at_loop_shutdown

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0  # seconds to connect, authenticate and select the database

_MORE = object()  # what hiredis.Reader.gets() returns when no complete reply is buffered


class ReplyError(exceptions.ResponseError):
    """An error reply from Redis (``ERR …``, ``NOSCRIPT …``, ``WRONGTYPE …``)."""


class RespConnectionError(exceptions.ConnectionError):
    """Could not connect, or the connection was lost before the reply came."""


class RespTimeoutError(exceptions.TimeoutError):
    """Connecting, or waiting for a reply, took longer than allowed."""


class _Protocol(asyncio.Protocol):
    """One connection: writes commands, matches replies to their futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=ReplyError, notEnoughData=_MORE)
        self.pending: collections.deque[asyncio.Future] = collections.deque()
        self.outgoing: list[bytes] = []  # queued this turn of the loop, written by _flush
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, payload: bytes, timeout: float | None) -> asyncio.Future:
        if self.lost:  # closed since the caller looked (a new connection the server closed
            # at once): its reply could never come, and a closing transport drops the write
            raise RespConnectionError("Connection to Redis lost.")
        future = self.loop.create_future()
        self.outgoing.append(payload)
        if len(self.outgoing) == 1:
            self.loop.call_soon(self._flush)
        self.pending.append(future)
        if timeout is not None:
            timer = self.loop.call_later(timeout, self._expire, future)
            future.add_done_callback(lambda _: timer.cancel())
        return future

    def _flush(self) -> None:
        payload = b"".join(self.outgoing)
        self.outgoing.clear()
        # A connection lost meanwhile has failed the futures of these commands already.
        if not self.transport.is_closing():
            self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while True:
            try:
                reply = self.reader.gets()
                if reply is _MORE:
                    return
                future = pending.popleft()
            except (hiredis.ProtocolError, IndexError):  # garbage, or an unasked reply
                logger.warning("Redis protocol error; closing the connection", exc_info=True)
                self._drop()
                return
            if future.done():  # its caller was cancelled or timed out: drop the reply
                continue
            if isinstance(reply, ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def eof_received(self) -> None:
        self.lost = True  # the server closed: the next command opens a new connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(RespConnectionError("Connection to Redis lost."))

    def _expire(self, future: asyncio.Future) -> None:
        if not future.done():
            future.set_exception(RespTimeoutError("Timeout reading from Redis."))
            self._drop()

    def _drop(self) -> None:
        """Abort the connection; ``connection_lost`` fails what is still waiting."""
        self.lost = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class Client:
    """One event loop's pipelined connection to the Redis at ``url``. Get it with
    :func:`client`; use it only on that loop."""

    def __init__(self, url: str, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._options = parse_url(url)
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task | None = None
        self._closed = False

    async def execute(self, *args: bytes | str | int, timeout: float | None = None):
        """Send one command and return its reply (bytes, int, list, None); ``timeout``
        bounds the wait for the reply, in seconds."""
        protocol = self._protocol
        if protocol is None or protocol.lost or protocol.transport.is_closing():
            protocol = await self._connect()
        return await protocol.send(hiredis.pack_command(args), timeout)

    async def _connect(self) -> _Protocol:
        """The open connection, opening it if needed; concurrent callers share one attempt,
        which a cancelled caller does not cancel."""
        if self._closed:
            raise RespConnectionError("The Redis client is closed.")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._opened)
        return await asyncio.shield(self._connecting)

    def _opened(self, task: asyncio.Task) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._protocol = task.result()

    async def _open(self) -> _Protocol:
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await self._handshake()
        except TimeoutError as exc:
            raise RespTimeoutError(f"Timeout connecting to Redis at {self._where()}.") from exc
        except OSError as exc:
            where = self._where()
            raise RespConnectionError(f"Can not connect to Redis at {where}: {exc}") from exc

    async def _handshake(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self._options

        def factory() -> _Protocol:
            return _Protocol(loop)

        kind = options.get("connection_class")
        if kind is UnixDomainSocketConnection:
            _, protocol = await loop.create_unix_connection(factory, options["path"])
        else:
            host, port = options.get("host", "localhost"), options.get("port", 6379)
            tls = ssl.create_default_context() if kind is SSLConnection else None
            _, protocol = await loop.create_connection(factory, host, port, ssl=tls)
        try:
            setup = []
            if options.get("password") is not None:
                user = options.get("username")
                credentials = (user, options["password"]) if user else (options["password"],)
                setup.append(protocol.send(hiredis.pack_command(("AUTH", *credentials)), None))
            if options.get("db"):
                setup.append(protocol.send(hiredis.pack_command(("SELECT", options["db"])), None))
            for outcome in await asyncio.gather(*setup, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        except BaseException:
            protocol.close()
            raise
        return protocol

    def _where(self) -> str:
        options = self._options
        host, port = options.get("host", "localhost"), options.get("port", 6379)
        return options.get("path") or f"{host}:{port}"

    def close(self) -> None:
        """Close the connection; commands still waiting fail with RespConnectionError."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.close()


class Script:
    """A Lua script run with ``EVALSHA``; when Redis does not know it yet (``NOSCRIPT``:
    first use, restart, ``SCRIPT FLUSH``) the same call is sent once as ``EVAL``, which also
    caches it in Redis for the next ``EVALSHA``."""

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest()  # noqa: S324 - Redis names scripts so

    async def __call__(self, client: Client, keys, args):
        try:
            return await client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await client.execute("EVAL", self.source, len(keys), *keys, *args)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Client]] = (
    weakref.WeakKeyDictionary()
)


def client(url: str) -> Client:
    """The running event loop's client for ``url`` (created on first use)."""
    loop = asyncio.get_running_loop()
    clients = _clients.get(loop)
    if clients is None:
        clients = _clients[loop] = {}
    found = clients.get(url)
    if found is None:
        found = clients[url] = Client(url)

        async def close() -> None:
            if clients.get(url) is found:
                del clients[url]
            found.close()

        at_loop_shutdown(loop, close)
    return found
