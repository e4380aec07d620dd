"""Writes of the audit log."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from apps.audit.models import AuditAction, AuditEntry
from apps.core.formats import format_credits


def _plain(value):
    """JSON-safe and exact: Decimals become their decimal string (0.420000 → "0.42")."""
    if isinstance(value, Decimal):
        return format_credits(value)
    if isinstance(value, dict):
        return {str(name): _plain(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def audit_record(
    *,
    actor,
    action: str,
    grant=None,
    target: str = "",
    before=None,
    after=None,
) -> AuditEntry:
    """Add one entry. ``actor`` is the person who acted (None: the system); ``grant`` decides
    whose admins may read it; ``before``/``after`` are the changed fields' values."""
    person = actor if actor is not None and actor.is_authenticated else None
    entry = AuditEntry(
        created=timezone.now(),
        actor=person,
        actor_name=person.get_username() if person else "",
        action=AuditAction(action),
        grant=grant,
        target=target[:300],
        before=_plain(before),
        after=_plain(after),
    )
    entry.full_clean()
    entry.save(force_insert=True)
    return entry


def audit_credits_allocated(*, grant, actor, before: Decimal | None) -> AuditEntry | None:
    """Record the grant's credit pool as allocated by ``actor``, if it is new (``before`` None)
    or differs from ``before``; returns the entry, or None when the pool did not change."""
    if before is not None and before == grant.credits_allocated:
        return None
    return audit_record(
        actor=actor,
        action=AuditAction.CREDITS_ALLOCATED,
        grant=grant,
        target=f"grant {grant.identifier}",
        before={"credits_allocated": before},
        after={"credits_allocated": grant.credits_allocated},
    )
