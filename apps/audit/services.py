"""Writes of the audit log."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from apps.audit.models import AuditAction, AuditEntry
from apps.core.formats import format_credits
from apps.grants.models import Grant


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


def audit_membership(*, membership, actor, action: str, before=None, after=None, via: str = ""):
    """Record a change of a team's membership in the log of each of the team's grants (their
    admins read it there), or once without a grant (staff only) when the team has none."""
    if via:
        after = {**(after or {}), "via": via}
    target = f"{membership.user.get_username()} in team {membership.team.name}"
    grants = list(Grant.objects.filter(team_id=membership.team_id).order_by("pk")) or [None]
    for grant in grants:
        audit_record(
            actor=actor, action=action, grant=grant, target=target, before=before, after=after
        )
