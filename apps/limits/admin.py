from __future__ import annotations

from django.contrib import admin

from apps.limits.models import MemberLimitChange


@admin.register(MemberLimitChange)
class MemberLimitChangeAdmin(admin.ModelAdmin):
    """The history is read-only: limits change through the grant page or Member limits."""

    list_display = ("created", "grant", "user", "before", "after", "scope", "changed_by")
    list_filter = ("scope",)
    list_select_related = ("grant", "user", "changed_by")
    search_fields = ("grant__identifier", "user__username")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
