"""The key authentication service: from a bearer secret to a key, or the reason it is refused.

Used by the gateway (async: ``aapi_key_authenticate``) and the management endpoint. Malformed
secrets are refused before any query; active keys are served from the shared cache
(``apps.keys.cache``) until they change. The gateway may also start a request's hold on the
API key this process last accepted for the secret (``recent_api_key``) while the cache is
read, but what it answers is always what the fresh read says.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from django.utils import timezone

from apps.core.calendar import local_today
from apps.keys.cache import (
    API_KIND,
    MANAGEMENT_KIND,
    acached_key,
    aremember_key,
    cached_key,
    remember_key,
)
from apps.keys.models import API_KEY_PREFIX, MANAGEMENT_KEY_PREFIX, ApiKey, ManagementKey
from apps.keys.tokens import secret_lookup, secret_matches


class Refusal(enum.StrEnum):
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    ARCHIVED = "archived"
    WRONG_KIND = "wrong_kind"
    GRANT_NOT_VALID = "grant_not_valid"
    OWNER_INACTIVE = "owner_inactive"


# Refusals answered with 403 (the key is genuine but may not do this), with their codes.
FORBIDDEN = {Refusal.WRONG_KIND: "wrong_key_kind", Refusal.GRANT_NOT_VALID: "grant_not_valid"}
# Refusals answered with 401 under a code of their own (else ``invalid_api_key``): the key is
# genuine and not revoked, but does not work for now.
UNAUTHORIZED = {Refusal.OWNER_INACTIVE: "account_disabled"}


@dataclass(frozen=True)
class KeyKind:
    name: str
    label: str
    visible_prefix: str
    other_prefix: str
    wrong_kind_message: str
    queryset: Callable[[], QuerySet]
    has_grant: bool = False


API = KeyKind(
    name=API_KIND,
    label="API key",
    visible_prefix=API_KEY_PREFIX,
    other_prefix=MANAGEMENT_KEY_PREFIX,
    wrong_kind_message="A management key can only create API keys; use an API key here.",
    queryset=lambda: ApiKey.objects.select_related("grant", "owner").defer("owner__password"),
    has_grant=True,
)
MANAGEMENT = KeyKind(
    name=MANAGEMENT_KIND,
    label="management key",
    visible_prefix=MANAGEMENT_KEY_PREFIX,
    other_prefix=API_KEY_PREFIX,
    wrong_kind_message="An API key can not create keys; use a management key here.",
    queryset=lambda: ManagementKey.objects.select_related("owner").defer("owner__password"),
)


@dataclass(frozen=True)
class AuthResult:
    """``key`` (with owner, and grant for API keys) when accepted; else ``refusal``."""

    key: ApiKey | ManagementKey | None = None
    refusal: Refusal | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.key is not None

    @property
    def status(self) -> int:
        """The HTTP status a refusal maps to: 403 for the wrong kind of key or a grant outside
        its validity dates, else 401."""
        if self.ok:
            return 200
        return 403 if self.refusal in FORBIDDEN else 401

    @property
    def code(self) -> str | None:
        """The error code for clients: ``invalid_api_key`` or ``account_disabled`` (401),
        ``wrong_key_kind`` or ``grant_not_valid`` (403)."""
        if self.ok:
            return None
        return FORBIDDEN.get(self.refusal) or UNAUTHORIZED.get(self.refusal, "invalid_api_key")


def _refuse(kind: KeyKind, refusal: Refusal) -> AuthResult:
    messages = {
        Refusal.MALFORMED: f"Invalid {kind.label}.",
        Refusal.UNKNOWN: f"Invalid {kind.label}.",
        Refusal.EXPIRED: f"This {kind.label} has expired.",
        Refusal.REVOKED: f"This {kind.label} has been revoked.",
        Refusal.ARCHIVED: f"This {kind.label} has been archived and revoked.",
        Refusal.WRONG_KIND: kind.wrong_kind_message,
        Refusal.OWNER_INACTIVE: f"The owner of this {kind.label} is deactivated; their keys do "
        "not work until the account is active again.",
    }
    return AuthResult(refusal=refusal, message=messages[refusal])


def _refuse_malformed(kind: KeyKind, secret: str) -> AuthResult:
    if secret_lookup(secret, visible_prefix=kind.other_prefix) is not None:
        return _refuse(kind, Refusal.WRONG_KIND)
    return _refuse(kind, Refusal.MALFORMED)


def _judge(kind: KeyKind, secret: str, key) -> AuthResult:
    if key is None or not secret_matches(secret, key.digest):
        return _refuse(kind, Refusal.UNKNOWN)
    return _judge_standing(kind, key)


def _judge_standing(kind: KeyKind, key) -> AuthResult:
    """Whether a key known to be the caller's still works: not archived, revoked or expired,
    its owner active, its grant valid today."""
    if getattr(key, "archived_at", None):
        return _refuse(kind, Refusal.ARCHIVED)
    if key.revoked_at:
        return _refuse(kind, Refusal.REVOKED)
    now = timezone.now()
    if key.expires_at <= now:
        return _refuse(kind, Refusal.EXPIRED)
    if not key.owner.is_active:  # not revoked: the keys work again once the owner is reactivated
        return _refuse(kind, Refusal.OWNER_INACTIVE)
    if kind.has_grant:
        return _judge_grant(key, today=local_today(now))
    return AuthResult(key=key)


def _judge_grant(key, *, today) -> AuthResult:
    """An API key works only while its grant is valid, ``today`` in the service's time zone.
    The grant row comes with the key (from the cache), so this costs no query."""
    grant = key.grant
    if grant.valid_from <= today <= grant.valid_until:
        return AuthResult(key=key)
    when = (
        f"starts on {grant.valid_from:%Y-%m-%d}"
        if today < grant.valid_from
        else f"ended on {grant.valid_until:%Y-%m-%d}"
    )
    message = (
        f"Grant {grant.identifier} {when}: it is {grant.validity_text}, and today is "
        f"{today:%Y-%m-%d}. Its API keys work only while the grant is valid."
    )
    return AuthResult(refusal=Refusal.GRANT_NOT_VALID, message=message)


def _cacheable(result: AuthResult) -> bool:
    """Active keys are cached, also while their grant is outside its dates or their owner is
    deactivated (judged on every read; a change to either drops the entry), so a client
    hammering with such a key costs no query per request."""
    return result.ok or result.refusal in (Refusal.GRANT_NOT_VALID, Refusal.OWNER_INACTIVE)


def _authenticate(kind: KeyKind, secret: str) -> AuthResult:
    lookup = secret_lookup(secret, visible_prefix=kind.visible_prefix)
    if lookup is None:
        return _refuse_malformed(kind, secret)
    cached = cached_key(kind=kind.name, lookup_prefix=lookup)
    if cached is not None:
        return _judge(kind, secret, cached)
    key = kind.queryset().filter(lookup_prefix=lookup).first()
    result = _judge(kind, secret, key)
    if _cacheable(result):
        remember_key(kind=kind.name, key=key)
    return result


async def _aauthenticate(kind: KeyKind, secret: str) -> AuthResult:
    lookup = secret_lookup(secret, visible_prefix=kind.visible_prefix)
    if lookup is None:
        return _refuse_malformed(kind, secret)
    cached = await acached_key(kind=kind.name, lookup_prefix=lookup)
    if cached is not None:
        return _judge(kind, secret, cached)
    # In the shared worker threads, not afirst()'s per-request thread: a burst of cache
    # misses must not open one database connection per request.
    query = kind.queryset().filter(lookup_prefix=lookup).first
    key = await sync_to_async(query, thread_sensitive=False)()
    result = _judge(kind, secret, key)
    if _cacheable(result):
        await aremember_key(kind=kind.name, key=key)
    return result


def api_key_authenticate(*, secret: str) -> AuthResult:
    return _authenticate(API, secret)


async def aapi_key_authenticate(*, secret: str) -> AuthResult:
    return await _aauthenticate(API, secret)


async def aapi_key_standing(*, key_id: int) -> AuthResult:
    """The API key with id ``key_id`` judged as if its secret had been sent now: for work
    done later on the owner's behalf (a job's worker holds the key's id, never its secret)."""
    query = API.queryset().filter(pk=key_id).first
    key = await sync_to_async(query, thread_sensitive=False)()
    if key is None:
        return _refuse(API, Refusal.UNKNOWN)
    return _judge_standing(API, key)


def management_key_authenticate(*, secret: str) -> AuthResult:
    return _authenticate(MANAGEMENT, secret)


async def amanagement_key_authenticate(*, secret: str) -> AuthResult:
    return await _aauthenticate(MANAGEMENT, secret)


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header, or None."""
    scheme, _, secret = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()
