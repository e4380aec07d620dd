"""Reads of the audit log, always scoped: one grant's entries, or (staff) everything."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.audit.models import AuditEntry

PAGE_SIZE = 500


def audit_entries_for_grant(*, grant) -> QuerySet[AuditEntry]:
    return AuditEntry.objects.filter(grant=grant).select_related("grant")[:PAGE_SIZE]


def audit_entries_all() -> QuerySet[AuditEntry]:
    """Every entry, newest first: for staff only (the caller's access check)."""
    return AuditEntry.objects.select_related("grant")[:PAGE_SIZE]
