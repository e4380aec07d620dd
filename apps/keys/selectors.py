"""Reads of keys. Every selector takes the owner: people only ever see their own keys."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.keys.models import ApiKey, ManagementKey


def api_keys_for_owner(*, owner, archived: bool = False) -> QuerySet[ApiKey]:
    """The owner's keys in all grants: the main list, or the Archived keys tab."""
    return (
        ApiKey.objects.filter(owner=owner, archived_at__isnull=not archived)
        .select_related("grant")
        .order_by("-archived_at" if archived else "-created", "-created")
    )


def management_keys_for_owner(*, owner) -> QuerySet[ManagementKey]:
    """The owner's management keys, without the archived ones."""
    return ManagementKey.objects.filter(owner=owner, archived_at__isnull=True).order_by("-created")
