"""Writes for API keys and management keys. Every change that could make a cached key stale
drops its cache entry (``forget_key``), so the next request sees it in every process."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.core.exceptions import ApplicationError, Conflict, NotFound
from apps.keys.cache import API_KIND, MANAGEMENT_KIND, forget_key
from apps.keys.models import API_KEY_PREFIX, MANAGEMENT_KEY_PREFIX, ApiKey, ManagementKey
from apps.keys.tokens import secret_generate
from apps.teams.models import Membership

SECRET_ATTEMPTS = 3
# Expiries end before the calendar does, so that every time zone and offset can show them (the
# database stores up to 9999-12-31 in UTC; a local time past it can not be shown: a 500).
LATEST_EXPIRY = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def default_expiry() -> dt.datetime:
    return timezone.now() + dt.timedelta(days=settings.API_KEY_DEFAULT_DAYS)


def _future_expiry(expires_at: dt.datetime | None) -> dt.datetime:
    if expires_at is None:
        return default_expiry()
    try:
        if timezone.is_naive(expires_at):
            expires_at = timezone.make_aware(expires_at)
        in_range = expires_at < LATEST_EXPIRY  # (compared in UTC: may overflow)
    except OverflowError:
        in_range = False
    if not in_range:
        raise ApplicationError(
            "The expiration date is out of range: it must be before 9999-01-01.",
            param="expires_at",
        )
    if expires_at <= timezone.now():
        raise ApplicationError("The expiration date must be in the future.", param="expires_at")
    return expires_at


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("Give the key a name.", param="name")
    return name


def _validate(obj) -> None:
    """``full_clean`` for field rules; uniqueness is left to the database constraints."""
    try:
        obj.full_clean(
            exclude=["lookup_prefix", "digest"], validate_unique=False, validate_constraints=False
        )
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        param = None if field == NON_FIELD_ERRORS else field
        raise ApplicationError(" ".join(messages), param=param) from exc


def _name_taken(key: ApiKey) -> bool:
    return ApiKey.objects.filter(grant=key.grant, name=key.name, archived_at__isnull=True).exists()


def _insert_with_secret(key, *, visible_prefix: str) -> str:
    """Save a new key with a fresh secret; a (rare) lookup-prefix collision draws again."""
    for attempt in range(SECRET_ATTEMPTS):
        new = secret_generate(visible_prefix=visible_prefix)
        key.lookup_prefix, key.digest = new.lookup_prefix, new.digest
        try:
            with transaction.atomic():
                key.save(force_insert=True)
            return new.secret
        except IntegrityError:
            if isinstance(key, ApiKey) and _name_taken(key):
                raise Conflict(
                    f'A key named "{key.name}" already exists in grant {key.grant.identifier}. '
                    "Choose another name (names of archived keys are free).",
                    param="name",
                ) from None
            if attempt == SECRET_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def api_key_create(
    *,
    grant,
    owner,
    name: str,
    comment: str = "",
    expires_at: dt.datetime | None = None,
    monthly_limit: Decimal | None = None,
    total_limit: Decimal | None = None,
) -> tuple[ApiKey, str]:
    """A new key of ``owner`` (a member of the grant's team) and its secret, shown once. A
    grant that has ended gets no new keys."""
    with transaction.atomic():
        # Locks the membership: someone leaving the team meanwhile (membership_delete) either
        # waits and revokes this key too, or is gone and the key is refused.
        if not _membership_locked(owner=owner, grant=grant):
            raise NotFound("No such grant.", param="grant_id")
        if grant.has_ended:
            raise ApplicationError(
                f"Grant {grant.identifier} ended on {grant.valid_until:%Y-%m-%d} "
                f"({grant.validity_text}); it gets no new API keys.",
                param="grant",
            )
        key = ApiKey(
            grant=grant,
            owner=owner,
            name=_clean_name(name),
            comment=(comment or "").strip(),
            expires_at=_future_expiry(expires_at),
            monthly_limit=monthly_limit,
            total_limit=total_limit,
        )
        _validate(key)
        return key, _insert_with_secret(key, visible_prefix=API_KEY_PREFIX)


def _membership_locked(*, owner, grant) -> bool:
    if not owner.is_authenticated:
        return False
    return Membership.objects.select_for_update().filter(team_id=grant.team_id, user=owner).exists()


def _audit(key: ApiKey, action: str, actor, before: dict, after: dict) -> None:
    """An audit log entry in the key's grant (its admins and staff read it)."""
    target = f"API key {key.name} ({key.display_prefix}…) of {key.owner.get_username()}"
    audit_record(
        actor=actor, action=action, grant=key.grant, target=target, before=before, after=after
    )


def api_key_revoke(*, key: ApiKey, actor=None, reason: str = "") -> ApiKey:
    """Revoke at once; revoking twice keeps the first time. ``actor``: who did it, for the
    audit log (None: the system); ``reason``, when given, is written there too."""
    with transaction.atomic():
        revoked = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        key.refresh_from_db(fields=["revoked_at"])
        forget_key(kind=API_KIND, lookup_prefix=key.lookup_prefix)
        if revoked:
            after = {"revoked": True, **({"reason": reason} if reason else {})}
            _audit(key, AuditAction.KEY_REVOKED, actor, {"revoked": False}, after)
    return key


def api_keys_revoke_in_team(*, team, user, actor=None) -> list[ApiKey]:
    """The person left ``team``: revoke their API keys in its grants at once; returns the keys
    revoked now. The caller holds the membership row's lock (``membership_delete``)."""
    reason = f"{user.get_username()} left team {team.name}"
    keys = list(
        ApiKey.objects.filter(owner=user, grant__team=team, revoked_at__isnull=True)
        .select_related("grant", "owner")
        .order_by("pk")
    )
    for key in keys:
        api_key_revoke(key=key, actor=actor, reason=reason)
    return keys


def _forget_live(kind: str, keys) -> None:
    """Drop the cache entries of the keys in ``keys`` that still work."""
    for prefix in keys.filter(revoked_at__isnull=True).values_list("lookup_prefix", flat=True):
        forget_key(kind=kind, lookup_prefix=prefix)


def api_keys_forget_grant(*, grant) -> None:
    """The grant row changed in a way requests must see at once (its validity dates or its
    allocation): drop its keys' cache entries, which carry the grant."""
    _forget_live(API_KIND, ApiKey.objects.filter(grant=grant))


def api_keys_forget_member(*, grant, user) -> None:
    """The member's monthly limit in the grant changed: drop the cache entries of their keys
    in it, so no request takes a credit hold placed under the old limit (apps.usage.ready)."""
    _forget_live(API_KIND, ApiKey.objects.filter(grant=grant, owner=user))


def keys_forget_owner(*, user) -> None:
    """The person changed in a way requests must see at once (affiliation, active flag): drop
    the cache entries of their keys, which carry the owner row."""
    _forget_live(API_KIND, ApiKey.objects.filter(owner=user))
    _forget_live(MANAGEMENT_KIND, ManagementKey.objects.filter(owner=user))


def api_key_archive(*, key: ApiKey, actor=None) -> ApiKey:
    """Revoke at once, hide from the main list and free the name for a new key."""
    now = timezone.now()
    with transaction.atomic():
        was_revoked = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        archived = ApiKey.objects.filter(pk=key.pk, archived_at__isnull=True).update(
            archived_at=now
        )
        key.refresh_from_db(fields=["revoked_at", "archived_at"])
        forget_key(kind=API_KIND, lookup_prefix=key.lookup_prefix)
        if archived:
            before = {"revoked": not was_revoked, "archived": False}
            after = {"revoked": True, "archived": True}
            _audit(key, AuditAction.KEY_ARCHIVED, actor, before, after)
    return key


def api_key_change_limits(
    *, key: ApiKey, monthly_limit: Decimal | None, total_limit: Decimal | None, actor=None
) -> ApiKey:
    """New monthly and total credit limits (None: no limit). The expiry never changes."""
    if key.archived_at:
        raise ApplicationError("An archived key's limits can no longer change.")
    if key.revoked_at:
        raise ApplicationError("A revoked key's limits can no longer change.")
    before = {"monthly_limit": key.monthly_limit, "total_limit": key.total_limit}
    key.monthly_limit, key.total_limit = monthly_limit, total_limit
    _validate(key)
    with transaction.atomic():
        key.save(update_fields=["monthly_limit", "total_limit"])
        forget_key(kind=API_KIND, lookup_prefix=key.lookup_prefix)
        after = {"monthly_limit": key.monthly_limit, "total_limit": key.total_limit}
        if after != before:
            _audit(key, AuditAction.KEY_LIMITS_CHANGED, actor, before, after)
    return key


def management_key_create(
    *, owner, name: str, expires_at: dt.datetime | None = None
) -> tuple[ManagementKey, str]:
    """A new management key of ``owner`` and its secret, shown once."""
    key = ManagementKey(owner=owner, name=_clean_name(name), expires_at=_future_expiry(expires_at))
    _validate(key)
    return key, _insert_with_secret(key, visible_prefix=MANAGEMENT_KEY_PREFIX)


def management_key_revoke(*, key: ManagementKey) -> ManagementKey:
    with transaction.atomic():
        ManagementKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        key.refresh_from_db(fields=["revoked_at"])
        forget_key(kind=MANAGEMENT_KIND, lookup_prefix=key.lookup_prefix)
    return key


def management_key_archive(*, key: ManagementKey) -> ManagementKey:
    """Revoke at once (if it is not yet) and hide the key from the list."""
    now = timezone.now()
    with transaction.atomic():
        ManagementKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now)
        ManagementKey.objects.filter(pk=key.pk, archived_at__isnull=True).update(archived_at=now)
        key.refresh_from_db(fields=["revoked_at", "archived_at"])
        forget_key(kind=MANAGEMENT_KIND, lookup_prefix=key.lookup_prefix)
    return key


def management_key_touch(*, key: ManagementKey) -> None:
    """Record that the key was just used (shown on the Management keys page)."""
    ManagementKey.objects.filter(pk=key.pk).update(last_used=timezone.now())
