"""Staff read the audit log here too; nobody edits or deletes it."""

from __future__ import annotations

from django.contrib import admin

from apps.audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("created", "actor_name", "action", "grant", "target", "before", "after")
    list_filter = ("action",)
    list_select_related = ("grant",)
    search_fields = ("actor_name", "target", "grant__identifier")
    date_hierarchy = "created"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
