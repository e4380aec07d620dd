"""The hot-path cache of authenticated keys (Django's cache: Redis when configured, so every
process shares it; in-process memory otherwise).

Only active keys are cached, under their lookup prefix. When a key changes (revoke, archive,
new limits) its entry is replaced by a tombstone after the transaction commits. Positive
entries are written with ``add`` (only where nothing is), so a request that read the key just
before the change can not put the stale row back over the tombstone.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

TOMBSTONE = "changed"
API_KIND = "api"
MANAGEMENT_KIND = "management"


def cache_key(*, kind: str, lookup_prefix: str) -> str:
    return f"keys:{kind}:{lookup_prefix}"


def _timeout() -> int:
    return settings.API_KEY_CACHE_SECONDS


def cached_key(*, kind: str, lookup_prefix: str):
    """The cached key row, or None on a miss, a tombstone or a cache outage."""
    try:
        entry = cache.get(cache_key(kind=kind, lookup_prefix=lookup_prefix))
    except Exception:
        logger.warning("key cache unavailable; reading the database", exc_info=True)
        return None
    return None if entry == TOMBSTONE else entry


async def acached_key(*, kind: str, lookup_prefix: str):
    try:
        entry = await cache.aget(cache_key(kind=kind, lookup_prefix=lookup_prefix))
    except Exception:
        logger.warning("key cache unavailable; reading the database", exc_info=True)
        return None
    return None if entry == TOMBSTONE else entry


def remember_key(*, kind: str, key) -> None:
    try:
        cache.add(cache_key(kind=kind, lookup_prefix=key.lookup_prefix), key, _timeout())
    except Exception:
        logger.warning("key cache unavailable; not caching", exc_info=True)


async def aremember_key(*, kind: str, key) -> None:
    try:
        await cache.aadd(cache_key(kind=kind, lookup_prefix=key.lookup_prefix), key, _timeout())
    except Exception:
        logger.warning("key cache unavailable; not caching", exc_info=True)


def forget_key(*, kind: str, lookup_prefix: str) -> None:
    """Drop the cached entry now, and again with a tombstone once the transaction commits."""
    name = cache_key(kind=kind, lookup_prefix=lookup_prefix)

    def bury() -> None:
        cache.set(name, TOMBSTONE, _timeout())

    try:
        bury()
    except Exception:
        logger.warning("key cache unavailable; entry dropped after commit", exc_info=True)
    transaction.on_commit(bury, robust=True)
