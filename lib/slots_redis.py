"""Redis-backed slots: one limit per model across every gateway process sharing a Redis.

Data, per model, under ``B = <prefix>:slots:{<model>}`` (the braces are a hash tag, so all
keys of a model live together):

* ``B:held``     ZSET token → lease expiry (ms, Redis clock): the slots in flight.
* ``B:waiting``  ZSET token → lease expiry: the queue entries (its ZCARD is the queue length).
* ``B:owners``   HASH token → grant of each waiting token.
* ``B:queue:<grant>`` LIST of that grant's waiting tokens, oldest first.
* ``B:rotation`` LIST of the grants that have waiters, in round-robin order.
* ``B:limit``    the ``max_concurrency`` sent by the latest acquire.

Invariants (every change runs inside one Lua script, so Redis executes it atomically and no
other client ever sees a half-done state): a token is in ``waiting`` ⇔ in ``owners`` ⇔ in
exactly one grant queue; a grant is in ``rotation`` (once) ⇔ its queue is non-empty; a token
is never both held and waiting; ``ZCARD held`` exceeds ``limit`` only after the limit was
lowered, and then no waiter is admitted until it drops below.

Every script first runs ``purge`` (drops leases that expired — a crashed process's slots and
queue entries — using Redis' ``TIME``, so process clocks do not matter) and ``fill`` (while
``ZCARD held < limit`` and grants are waiting: take the next grant off ``rotation``, pop its
oldest token, put the grant back at the end if it still has waiters, move the token into
``held`` and ``PUBLISH`` the token on ``<prefix>:slots:wake``). The scripts:

* ``acquire(token, grant, max, queue_size)`` — store ``limit``, purge, fill; after fill a free
  slot means nobody is waiting, so the caller takes it (``{1}``, the one round trip of the
  uncontended path); otherwise it queues if ``ZCARD waiting < queue_size`` (``{0}``), else is
  refused (``{-1, queued}``). Slot count and queue bound are decided in the same atomic step.
* ``leave(token)`` — release a held token, or take a waiting one out of its queue; then
  purge and fill, so the freed slot goes straight to the next waiter. Idempotent.
* ``renew(tokens…)`` — the heartbeat: purge, fill, extend the lease of each token still
  present and report it held (1), waiting (0) or gone (-1). ``ZADD`` only touches tokens
  found present, so a late heartbeat can never resurrect a released slot.
* ``stats`` (purge, fill, counts) and ``reset`` (delete the model's keys, for tests).

Hand-off and wake-up: a freed slot is given to the next waiter inside the script (the waiter
is *already* holding it when woken, so no newcomer can overtake it). The ``PUBLISH`` is only
a hint: each event loop keeps one pub/sub connection on the wake channel and resolves the
future of the named token at once. The truth is ``held``: the heartbeat (every
``min(1 s, lease / 3)``) reports each local token's state, which covers a message lost while
the pub/sub connection was down, and it also runs ``purge``/``fill``, so waiters behind a
crashed holder are admitted within one tick after its lease ends. A waiter registers its
future *before* its acquire script runs, so a wake message cannot arrive unseen.

Cancellation: the acquire script runs in a shielded task; if the request is cancelled
meanwhile, ``leave`` runs once the script's outcome is known. A cancelled waiter runs
``leave``, which takes it out of the queue — or, when the hand-off won the race, releases the
slot it had just been given. If a cancellation interrupts a ``leave`` round trip, it is sent
again from a background task (it is idempotent: tokens are unique and never reused); if Redis
is unreachable the lease expiry frees the slot instead.

Connections, per event loop (asyncio connections cannot cross loops): the scripts run on the
loop's pipelined connection of :mod:`lib.resp` (``EVALSHA``, ``EVAL`` when Redis does
not know a script yet; a small fraction of redis-py's CPU per call), shared with the key cache;
the pub/sub listener keeps a ``redis.asyncio`` client of its own; one heartbeat task.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lib import resp
from lib.slots import QueueFull, SlotsUnavailable, retry_after

logger = logging.getLogger(__name__)

_COMMON = """
local held, waiting, owners, rotation, limit = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local queue_prefix, channel, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function unqueue(token)
  local grant = redis.call('HGET', owners, token)
  if not grant then return end
  local queue = queue_prefix .. grant
  redis.call('HDEL', owners, token)
  redis.call('ZREM', waiting, token)
  redis.call('LREM', queue, 1, token)
  if redis.call('LLEN', queue) == 0 then redis.call('LREM', rotation, 1, grant) end
end

local function purge()
  redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
  for _, token in ipairs(redis.call('ZRANGEBYSCORE', waiting, '-inf', now)) do
    unqueue(token)
  end
end

local function fill()
  local max = tonumber(redis.call('GET', limit) or '1')
  while redis.call('ZCARD', held) < max do
    local grant = redis.call('LPOP', rotation)
    if not grant then return end
    local queue = queue_prefix .. grant
    local token = redis.call('LPOP', queue)
    if redis.call('LLEN', queue) > 0 then redis.call('RPUSH', rotation, grant) end
    if token then
      redis.call('HDEL', owners, token)
      redis.call('ZREM', waiting, token)
      redis.call('ZADD', held, now + lease, token)
      redis.call('PUBLISH', channel, token)
    end
  end
end
"""

_SCRIPTS = {
    "acquire": _COMMON
    + """
local token, grant = ARGV[4], ARGV[5]
local max, queue_size = tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('SET', limit, max)
purge()
fill()
if redis.call('ZCARD', held) < max then
  redis.call('ZADD', held, now + lease, token)
  return {1, 0}
end
local queued = redis.call('ZCARD', waiting)
if queued >= queue_size then return {-1, queued} end
redis.call('ZADD', waiting, now + lease, token)
redis.call('HSET', owners, token, grant)
if redis.call('RPUSH', queue_prefix .. grant, token) == 1 then
  redis.call('RPUSH', rotation, grant)
end
return {0, queued + 1}
""",
    "leave": _COMMON
    + """
local released = redis.call('ZREM', held, ARGV[4])
if released == 0 then unqueue(ARGV[4]) end
purge()
fill()
return released
""",
    "renew": _COMMON
    + """
purge()
fill()
local states = {}
for i = 4, #ARGV do
  local token = ARGV[i]
  if redis.call('ZSCORE', held, token) then
    redis.call('ZADD', held, now + lease, token)
    states[#states + 1] = 1
  elseif redis.call('ZSCORE', waiting, token) then
    redis.call('ZADD', waiting, now + lease, token)
    states[#states + 1] = 0
  else
    states[#states + 1] = -1
  end
end
return states
""",
    "stats": _COMMON
    + """
purge()
fill()
return {redis.call('ZCARD', held), redis.call('ZCARD', waiting)}
""",
    "reset": _COMMON
    + """
for _, grant in ipairs(redis.call('LRANGE', rotation, 0, -1)) do
  redis.call('DEL', queue_prefix .. grant)
end
return redis.call('DEL', held, waiting, owners, rotation, limit)
""",
}

_RUNNERS = {name: resp.Script(source) for name, source in _SCRIPTS.items()}

_UNREACHABLE = "The concurrency limiter's Redis is unreachable."


@dataclass(frozen=True)
class _Keys:
    keys: tuple[str, ...]
    args: tuple[str, str, int]  # grant queue prefix, wake channel, lease (ms)


@dataclass(eq=False)
class _Ticket:
    state: _LoopState
    model: str
    token: str


class _LoopState:
    """What belongs to one event loop: the connection the scripts run on, this loop's
    waiting and held tokens, the pub/sub client and listener, the heartbeat."""

    def __init__(self, owner: RedisSlots) -> None:
        self.owner = owner
        self.connection = resp.client(owner.url)  # shared; closed when the loop shuts down
        self.client = aioredis.Redis.from_url(owner.url)  # pub/sub only
        self.waiters: dict[str, asyncio.Future] = {}
        self.tokens: dict[str, dict[str, bool]] = {}  # model → token → held (False: waiting)
        self.subscribed = asyncio.Event()
        self.poke = asyncio.Event()
        self.ready = False
        self.background: set[asyncio.Task] = set()
        self.tasks = [asyncio.ensure_future(self._listen()), asyncio.ensure_future(self._beat())]
        # Tokens are unique across processes and never reused: a random prefix of this loop's
        # own, then a count (no random draw, a system call here, per acquire).
        self._token_prefix = uuid.uuid4().hex
        self._token_count = itertools.count()

    def new_token(self) -> str:
        return f"{self._token_prefix}-{next(self._token_count)}"

    async def run(self, script: str, model: str, *args: object) -> list[int]:
        keys = self.owner.keys(model)
        return await _RUNNERS[script](self.connection, keys.keys, (*keys.args, *args))

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("slots: %s; the lease will expire instead", task.exception())

    def wake(self, token: str, error: Exception | None = None) -> None:
        future = self.waiters.get(token)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    async def _listen(self) -> None:
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.owner.channel)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self.wake(message["data"].decode())
                    elif message["type"] == "subscribe":
                        self.subscribed.set()
                        self.poke.set()  # catch up on wake-ups published while unsubscribed
            except Exception as exc:  # keep listening whatever happened; polling covers gaps
                logger.warning("slots: pub/sub lost (%s); waiters fall back to polling", exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(0.5)

    async def _beat(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.poke.wait(), self.owner.tick)
            self.poke.clear()
            models = [model for model, tokens in self.tokens.items() if tokens]
            try:
                await asyncio.gather(*(self._renew(model) for model in models))
            except Exception:  # the heartbeat must outlive any single failure
                logger.exception("slots: heartbeat failed")

    async def _renew(self, model: str) -> None:
        mine = self.tokens.get(model, {})
        tokens = list(mine)
        try:
            states = await self.run("renew", model, *tokens)
        except (RedisError, OSError) as exc:
            logger.warning("slots: heartbeat for %r failed (%s)", model, exc)
            return
        for token, state in zip(tokens, states, strict=True):
            if state == 1:
                self.wake(token)
            elif state == -1 and token in mine:
                if token in self.waiters:
                    self.wake(token, SlotsUnavailable("Queue entry expired.", retry_after=1))
                else:
                    mine.pop(token, None)
                    logger.warning("slots: a slot of %r outlived its lease", model)

    async def close(self) -> None:
        await asyncio.gather(*self.background, return_exceptions=True)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()


class RedisSlots:
    def __init__(
        self, *, url: str, prefix: str, lease_seconds: float = 30.0, poll_seconds: float = 1.0
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.channel = f"{prefix}:slots:wake"
        self.lease_ms = max(int(lease_seconds * 1000), 1)
        self.tick = min(poll_seconds, lease_seconds / 3)
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._keys: dict[str, _Keys] = {}
        self._lock = threading.Lock()

    def keys(self, model: str) -> _Keys:
        keys = self._keys.get(model)
        if keys is None:
            base = f"{self.prefix}:slots:{{{model}}}"
            names = ("held", "waiting", "owners", "rotation", "limit")
            keys = _Keys(
                keys=tuple(f"{base}:{name}" for name in names),
                args=(f"{base}:queue:", self.channel, self.lease_ms),
            )
            self._keys[model] = keys
        return keys

    async def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            with self._lock:
                for closed in [other for other in self._states if other.is_closed()]:
                    del self._states[closed]
                state = self._states[loop] = _LoopState(self)
        if not state.ready:  # the first calls on a loop wait (briefly) for the wake channel
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(state.subscribed.wait(), 2.0)
            state.ready = True
        return state

    async def acquire(
        self, *, model: str, grant: str, max_concurrency: int, queue_size: int
    ) -> _Ticket:
        state = await self._state()
        token = state.new_token()
        future = asyncio.get_running_loop().create_future()
        state.waiters[token] = future
        call = asyncio.ensure_future(
            state.run("acquire", model, token, grant, max_concurrency, queue_size)
        )
        try:
            outcome, queued = await asyncio.shield(call)
        except asyncio.CancelledError:
            state.waiters.pop(token, None)
            state.spawn(self._abandon(state, model, token, call))
            raise
        except (RedisError, OSError) as exc:
            state.waiters.pop(token, None)
            raise SlotsUnavailable(_UNREACHABLE, retry_after=1) from exc
        if outcome == -1:
            state.waiters.pop(token, None)
            raise QueueFull(
                f"The model {model!r} is busy and its queue is full.",
                retry_after=retry_after(
                    model=model, queued=queued, max_concurrency=max_concurrency
                ),
            )
        mine = state.tokens.setdefault(model, {})
        mine[token] = outcome == 1
        if outcome == 0:
            await self._wait(state, model, token, future)
        state.waiters.pop(token, None)
        return _Ticket(state=state, model=model, token=token)

    async def _wait(self, state: _LoopState, model: str, token: str, future) -> None:
        """Wait in the queue until Redis hands this token a slot; leave it on any exit."""
        mine = state.tokens.setdefault(model, {})
        try:
            await future
        except BaseException:
            mine.pop(token, None)
            state.waiters.pop(token, None)
            await self._leave(state, model, token)
            raise
        mine[token] = True

    async def release(self, ticket: _Ticket) -> None:
        ticket.state.tokens.get(ticket.model, {}).pop(ticket.token, None)
        await self._leave(await self._state(), ticket.model, ticket.token)

    async def stats(self, model: str) -> dict[str, int]:
        state = await self._state()
        try:
            in_flight, queued = await state.run("stats", model)
        except (RedisError, OSError) as exc:
            raise SlotsUnavailable(_UNREACHABLE, retry_after=1) from exc
        return {"in_flight": in_flight, "queued": queued}

    async def reset(self, model: str) -> None:
        state = await self._state()
        await state.run("reset", model)
        state.tokens.pop(model, None)

    async def close(self) -> None:
        """Close the current event loop's client, listener and heartbeat."""
        with self._lock:
            state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.close()

    async def _leave(self, state: _LoopState, model: str, token: str) -> None:
        """Release or unqueue ``token``. ``leave`` is idempotent, so when a cancellation cuts
        the round trip short it is sent again from a task that nothing cancels."""
        try:
            await state.run("leave", model, token)
        except asyncio.CancelledError:
            state.spawn(state.run("leave", model, token))
            raise
        except (RedisError, OSError) as exc:
            logger.warning("slots: releasing a slot of %r failed (%s)", model, exc)

    async def _abandon(self, state: _LoopState, model: str, token: str, call) -> None:
        """The request was cancelled during its acquire script: undo whatever it did."""
        with contextlib.suppress(RedisError, OSError):
            await call
        await state.run("leave", model, token)
