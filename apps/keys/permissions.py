from __future__ import annotations

from rest_framework.permissions import BasePermission

from apps.keys.models import ApiKey, ManagementKey


class HasManagementKey(BasePermission):
    """The request was authenticated by a management key (not a session or anything else)."""

    message = "This endpoint needs 'Authorization: Bearer <management key>'."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, ManagementKey)


class HasApiKey(BasePermission):
    """The request was authenticated by an API key."""

    message = "This endpoint needs 'Authorization: Bearer <API key>'."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, ApiKey)
