"""Operators see keys and can revoke them; nothing else is editable here, because keys are
created with a secret shown once, and every change must drop the key's cache entry."""

from __future__ import annotations

from django.contrib import admin

from apps.keys.models import ApiKey, ManagementKey
from apps.keys.services import api_key_revoke, management_key_revoke


class ReadOnlyKeyAdmin(admin.ModelAdmin):
    search_fields = ("name", "lookup_prefix", "owner__username")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyKeyAdmin):
    list_display = ("name", "owner", "grant", "lookup_prefix", "status", "expires_at", "created")
    list_filter = ("grant",)
    list_select_related = ("owner", "grant")
    exclude = ("digest",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request, queryset) -> None:
        for key in queryset:
            api_key_revoke(key=key, actor=request.user)
        self.message_user(request, f"Revoked {len(queryset)} API key(s).")


@admin.register(ManagementKey)
class ManagementKeyAdmin(ReadOnlyKeyAdmin):
    list_display = ("name", "owner", "lookup_prefix", "status", "expires_at", "created")
    list_select_related = ("owner",)
    exclude = ("digest",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected management keys")
    def revoke(self, request, queryset) -> None:
        for key in queryset:
            management_key_revoke(key=key)
        self.message_user(request, f"Revoked {len(queryset)} management key(s).")
