"""The hot-path Redis client (``lib.resp``) against the test Redis (``REDIS_URL``)."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
import redis
import uvloop
from redis.connection import parse_url

from lib import resp
from tests.waiting import aeventually, eventually


@pytest.fixture
def url():
    if not os.environ.get("REDIS_URL"):
        pytest.fail("needs REDIS_URL (tests run against a real Redis)")
    return os.environ["REDIS_URL"]


@pytest.fixture
def other(url):
    """Another client of the same database, as another process would have."""
    client = redis.Redis.from_url(url)
    names = []
    yield client, names
    if names:
        client.delete(*names)
    client.close()


def name() -> str:
    return f"test-resp:{uuid.uuid4().hex}"


async def until_blocked(other_client: redis.Redis, client_id: int) -> None:
    """Wait until Redis has the connection ``client_id`` blocked in a command (BLPOP)."""

    def blocked() -> bool:
        [connection] = [c for c in other_client.client_list() if c["id"] == str(client_id)]
        return "b" in connection["flags"]

    await aeventually(blocked, what="the BLPOP blocking in Redis")


def test_it_sets_and_gets_in_the_urls_database(url, other):
    other_client, names = other
    key = name()
    names.append(key)

    async def scenario():
        client = resp.client(url)
        assert await client.execute("SET", key, b"\x00value", "EX", 60) == b"OK"
        info = await client.execute("CLIENT", "INFO")
        return await client.execute("GET", key), await client.execute("GET", name()), info

    value, missing, info = uvloop.run(scenario())
    assert (value, missing) == (b"\x00value", None)
    assert other_client.get(key) == b"\x00value"  # the same database as redis-py selects
    assert f" db={parse_url(url).get('db', 0)} ".encode() in info


def test_it_gives_each_of_many_concurrent_callers_its_own_reply(url):
    async def scenario():
        client = resp.client(url)
        replies = await asyncio.gather(*(client.execute("ECHO", i) for i in range(500)))
        ids = await asyncio.gather(*(client.execute("CLIENT", "ID") for _ in range(20)))
        return replies, ids

    replies, ids = uvloop.run(scenario())
    assert replies == [str(i).encode() for i in range(500)]
    assert len(set(ids)) == 1  # all on one pipelined connection


def test_it_raises_error_replies_and_goes_on(url, other):
    _, names = other
    key = name()
    names.append(key)

    async def scenario():
        client = resp.client(url)
        await client.execute("SET", key, "not a number")
        with pytest.raises(redis.exceptions.ResponseError, match="not an integer") as error:
            await client.execute("INCR", key)
        return error.value, await client.execute("GET", key)

    error, value = uvloop.run(scenario())
    assert isinstance(error, resp.ReplyError)
    assert value == b"not a number"


def test_it_runs_a_script_redis_does_not_know_yet_and_then_by_its_digest(url):
    script = resp.Script(f"return {{'{uuid.uuid4().hex}', ARGV[1], #KEYS}}")

    async def scenario():
        client = resp.client(url)
        known_before = await client.execute("SCRIPT", "EXISTS", script.sha)
        first = await script(client, ["k1", "k2"], [7])
        known_after = await client.execute("SCRIPT", "EXISTS", script.sha)
        sent = []
        original = client.execute

        async def counting(*args, **options):
            sent.append(args[0])
            return await original(*args, **options)

        client.execute = counting
        second = await script(client, ["k1"], ["x"])
        return known_before, first[1:], known_after, second[1:], sent

    known_before, first, known_after, second, sent = uvloop.run(scenario())
    assert known_before == [0]
    assert first == [b"7", 2]
    assert known_after == [1]
    assert (second, sent) == ([b"x", 1], ["EVALSHA"])


def test_it_does_not_hand_a_cancelled_callers_reply_to_the_next_caller(url, other):
    other_client, names = other
    key = name()
    names.append(key)

    async def scenario():
        client = resp.client(url)
        blocked = asyncio.ensure_future(client.execute("BLPOP", key, 5))
        await until_blocked(other_client, await client.execute("CLIENT", "ID"))
        behind = asyncio.ensure_future(client.execute("ECHO", "behind"))
        blocked.cancel()
        await asyncio.wait([blocked])  # cancelled; the ECHO, scheduled first, is queued by now
        other_client.rpush(key, "for the cancelled caller")  # BLPOP's reply comes now
        return await behind, await client.execute("ECHO", "after"), blocked.cancelled()

    assert uvloop.run(scenario()) == (b"behind", b"after", True)


def test_it_fails_waiting_callers_and_reconnects_when_the_connection_is_killed(url, other):
    other_client, names = other
    key = name()
    names.append(key)

    async def scenario():
        client = resp.client(url)
        before = await client.execute("CLIENT", "ID")
        blocked = asyncio.ensure_future(client.execute("BLPOP", key, 5))
        await until_blocked(other_client, before)
        other_client.client_kill_filter(_id=before)
        with pytest.raises(redis.exceptions.ConnectionError) as error:
            await blocked
        after = await client.execute("CLIENT", "ID")
        return error.value, before, after, await client.execute("ECHO", "ok")

    error, before, after, echoed = uvloop.run(scenario())
    assert isinstance(error, resp.RespConnectionError)
    assert after != before
    assert echoed == b"ok"


def test_it_times_out_a_late_reply_and_serves_the_next_call(url, other):
    _, names = other
    key = name()
    names.append(key)

    async def scenario():
        client = resp.client(url)
        with pytest.raises(redis.exceptions.TimeoutError):
            await client.execute("BLPOP", key, 5, timeout=0.1)
        return await client.execute("ECHO", "next", timeout=1)

    assert uvloop.run(scenario()) == b"next"


def test_it_raises_a_connection_error_when_redis_is_unreachable():
    async def scenario():
        await resp.client("redis://127.0.0.1:1/0").execute("PING")

    with pytest.raises(redis.exceptions.ConnectionError, match=r"127\.0\.0\.1:1\b"):
        uvloop.run(scenario())


def test_it_sends_the_urls_password(url):
    options = parse_url(url)
    wrong = f"redis://:not-the-password@{options['host']}:{options.get('port', 6379)}/0"

    async def scenario():
        await resp.client(wrong).execute("PING")

    with pytest.raises(redis.exceptions.ResponseError, match=r"AUTH|WRONGPASS|password"):
        uvloop.run(scenario())


def test_it_closes_its_connection_when_the_loop_ends(url, other):
    other_client, _ = other

    async def scenario():
        return await resp.client(url).execute("CLIENT", "ID")

    connection = str(uvloop.run(scenario()))
    eventually(
        lambda: connection not in [client["id"] for client in other_client.client_list()],
        what="Redis to see the connection closed",
    )


def test_it_reconnects_when_redis_closed_the_idle_connection(url, other):
    other_client, _ = other

    async def scenario():
        client = resp.client(url)
        before = await client.execute("CLIENT", "ID")
        other_client.client_kill_filter(_id=before)
        await aeventually(lambda: client._protocol.lost, what="the client to read the close")
        return before, await client.execute("CLIENT", "ID")

    before, after = uvloop.run(scenario())
    assert after != before


def test_a_command_sent_as_the_new_connection_closes_fails_instead_of_waiting_forever():
    # A server that answers SELECT and closes at once (a restart, an idle-timeout): the first
    # command finds the connection already closed and must fail, not wait for a reply that
    # can never come (the slot scripts wait without a timeout).
    async def serve(reader, writer):
        await reader.read(100)
        writer.write(b"+OK\r\n")
        await writer.drain()
        writer.close()

    async def scenario():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = resp.Client(f"redis://127.0.0.1:{port}/13")
        try:
            async with asyncio.timeout(3):
                with pytest.raises(resp.RespConnectionError):
                    await client.execute("GET", "anything")
        finally:
            client.close()
            server.close()

    asyncio.run(scenario())


def test_it_writes_the_commands_of_one_turn_of_the_loop_together(url):
    # A request's key-cache GET and its slot script are queued side by side: one write (one
    # system call, one read in Redis) for both.
    async def scenario():
        client = resp.Client(url)
        try:
            await client.execute("PING")  # connected
            transport = client._protocol.transport
            writes, write = [], transport.write
            transport.write = lambda data: (writes.append(data.count(b"ECHO")), write(data))
            together = await asyncio.gather(*(client.execute("ECHO", i) for i in range(3)))
            alone = await client.execute("ECHO", "later")
            return together, alone, writes
        finally:
            client.close()

    together, alone, writes = asyncio.run(scenario())  # asyncio's transport: write can be wrapped
    assert (together, alone) == ([b"0", b"1", b"2"], b"later")
    assert writes == [3, 1]
