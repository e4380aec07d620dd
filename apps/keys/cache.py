"""The hot-path cache of authenticated keys (Redis when configured, so every process shares
it; Django's in-process memory cache otherwise).

Only active keys are cached, under their lookup prefix. When a key changes (revoke, archive,
new limits) its entry is replaced by a tombstone after the transaction commits. Positive
entries are written with ``add`` (only where nothing is), so a request that read the key just
before the change can not put the stale row back over the tombstone.

With Redis this module talks to it through one process-wide connection pool (sync code) and
the event loop's pipelined connection of :mod:`lib.resp` (async code: less CPU per command
than redis-py's, and one write with the slot script sent beside it) rather than through
``django.core.cache.cache``: Django's caches are context-local, so under ASGI every request
built a new cache object and opened a new Redis connection. Entries keep Django's key format
and serialisation (``KEY_PREFIX:1:key``, pickled), so Django's cache API reads and clears them
as before.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.redis import RedisSerializer
from django.db import transaction

from apps.core.exceptions import ServiceUnavailable
from lib import resp

logger = logging.getLogger(__name__)

TOMBSTONE = "changed"
API_KIND = "api"
MANAGEMENT_KIND = "management"

_serializer = RedisSerializer()
_lock = threading.Lock()
_sync_clients: dict[str, redis.Redis] = {}
_READ_TIMEOUT = 2  # seconds; as the sync client's socket timeout


def cache_key(*, kind: str, lookup_prefix: str) -> str:
    return f"keys:{kind}:{lookup_prefix}"


def _timeout() -> int:
    return settings.API_KEY_CACHE_SECONDS


def _redis_location() -> str | None:
    config = settings.CACHES["default"]
    if config["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
        return None
    location = config["LOCATION"]
    return location[0] if isinstance(location, list | tuple) else location


def _stored_name(key: str) -> str:
    """Django's default key function: ``<KEY_PREFIX>:<VERSION>:<key>``."""
    config = settings.CACHES["default"]
    return f"{config.get('KEY_PREFIX', '')}:{config.get('VERSION', 1)}:{key}"


def _client_options() -> dict:
    # driver_info None: no CLIENT SETINFO (nor a package-metadata read) per new connection.
    return {"driver_info": None, "socket_connect_timeout": 2, "socket_timeout": 2}


def _sync_client(location: str) -> redis.Redis:
    client = _sync_clients.get(location)
    if client is None:
        with _lock:
            client = _sync_clients.get(location)
            if client is None:
                client = redis.Redis.from_url(location, **_client_options())
                _sync_clients[location] = client
    return client


def _entry(raw):
    return None if raw is None else _serializer.loads(raw)


# What the event loop unpickled lately, by the stored bytes. A key read here carries those bytes
# as ``cache_version``. Every change to what limits a key's requests (the key, its owner, its
# grant, the member's monthly limit in the grant) replaces the entry with a tombstone before it
# commits and again after (``forget_key``), which stays API_KEY_CACHE_SECONDS: two reads give
# the same version only when no such change committed between them, or the later one came that
# long after. The ledger keeps a key's next hold ready under it (apps.usage.ready). A key read
# from the database has none.
#
# Every request of a key reads the
# same bytes from Redis until the entry changes (a tombstone or a new row are other bytes), so
# unpickling a key with its owner and grant (about 0.1 ms) is done about once a minute per
# process and entry, not per request. The gateway only reads these shared objects; sync code
# (the portal, management keys) always gets a fresh copy.
_decoded: dict[bytes, tuple[float, object]] = {}
_DECODED_MAX = 4096
_DECODED_SECONDS = 60.0


def _shared_entry(raw):
    if raw is None:
        return None
    now = time.monotonic()
    found = _decoded.get(raw)
    if found is not None and found[0] > now:
        return found[1]
    entry = _serializer.loads(raw)
    if not isinstance(entry, str):  # a key, not a tombstone
        entry.cache_version = raw
    if len(_decoded) >= _DECODED_MAX:
        _decoded.clear()
    _decoded[raw] = (now + _DECODED_SECONDS, entry)
    return entry


def _get(key: str):
    location = _redis_location()
    if location is None:
        return cache.get(key)
    return _entry(_sync_client(location).get(_stored_name(key)))


async def _aget(key: str):
    location = _redis_location()
    if location is None:
        return cache.get(key)  # in-process memory: no I/O
    name = _stored_name(key)
    return _shared_entry(await resp.client(location).execute("GET", name, timeout=_READ_TIMEOUT))


def _add(key: str, value) -> None:
    location = _redis_location()
    if location is None:
        cache.add(key, value, _timeout())
        return
    _sync_client(location).set(_stored_name(key), _serializer.dumps(value), ex=_timeout(), nx=True)


async def _aadd(key: str, value) -> None:
    location = _redis_location()
    if location is None:
        cache.add(key, value, _timeout())
        return
    command = ("SET", _stored_name(key), _serializer.dumps(value), "EX", _timeout(), "NX")
    await resp.client(location).execute(*command, timeout=_READ_TIMEOUT)


def _set(key: str, value) -> None:
    location = _redis_location()
    if location is None:
        cache.set(key, value, _timeout())
        return
    _sync_client(location).set(_stored_name(key), _serializer.dumps(value), ex=_timeout())


def cached_key(*, kind: str, lookup_prefix: str):
    """The cached key row, or None on a miss, a tombstone or a cache outage."""
    try:
        entry = _get(cache_key(kind=kind, lookup_prefix=lookup_prefix))
    except Exception:
        logger.warning("key cache unavailable; reading the database", exc_info=True)
        return None
    return None if entry == TOMBSTONE else entry


async def acached_key(*, kind: str, lookup_prefix: str):
    try:
        entry = await _aget(cache_key(kind=kind, lookup_prefix=lookup_prefix))
    except Exception:
        logger.warning("key cache unavailable; reading the database", exc_info=True)
        return None
    return None if entry == TOMBSTONE else entry


def remember_key(*, kind: str, key) -> None:
    try:
        _add(cache_key(kind=kind, lookup_prefix=key.lookup_prefix), key)
    except Exception:
        logger.warning("key cache unavailable; not caching", exc_info=True)


async def aremember_key(*, kind: str, key) -> None:
    try:
        await _aadd(cache_key(kind=kind, lookup_prefix=key.lookup_prefix), key)
    except Exception:
        logger.warning("key cache unavailable; not caching", exc_info=True)


class KeyCacheUnavailable(ServiceUnavailable):
    code = "key_cache_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The key cache can not be reached, so other servers could go on accepting the key "
            "as it was: nothing was changed. Please try again in a moment."
        )


def forget_key(*, kind: str, lookup_prefix: str) -> None:
    """Replace the cached entry with a tombstone now, inside the caller's transaction, and
    again once it commits. Fails closed: when the tombstone can not be written now the change
    must not commit (other processes would go on accepting the key as cached for up to
    API_KEY_CACHE_SECONDS), so ``KeyCacheUnavailable`` is raised (503) and the caller's
    transaction rolls back. The tombstone stays API_KEY_CACHE_SECONDS and positive entries
    are only added where nothing is, so once it is written no process caches the key's old row
    again; the write after the commit renews it."""
    name = cache_key(kind=kind, lookup_prefix=lookup_prefix)

    def bury() -> None:
        _set(name, TOMBSTONE)

    try:
        bury()
    except Exception:
        logger.warning("key cache unavailable; the change is refused", exc_info=True)
        raise KeyCacheUnavailable() from None
    transaction.on_commit(bury, robust=True)
