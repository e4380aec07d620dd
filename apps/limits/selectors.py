"""Reads of members' limits and their history. A plain member's view is narrowed to their own
rows by passing ``user``."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet

from apps.limits.models import MemberLimit, MemberLimitChange

HISTORY_SIZE = 200


def member_limit_current(*, grant, user) -> Decimal | None:
    """The member's monthly limit in the grant now (None: no limit)."""
    row = MemberLimit.objects.filter(grant=grant, user=user).first()
    return row.monthly_limit if row else None


def member_limit_changes(*, grant, user=None) -> QuerySet[MemberLimitChange]:
    """The newest changes in the grant; only ``user``'s own when given."""
    changes = MemberLimitChange.objects.filter(grant=grant)
    if user is not None:
        changes = changes.filter(user=user)
    return changes.select_related("user", "changed_by")[:HISTORY_SIZE]
