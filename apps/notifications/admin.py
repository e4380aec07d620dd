from __future__ import annotations

from django.contrib import admin

from apps.notifications.models import NotificationSent


@admin.register(NotificationSent)
class NotificationSentAdmin(admin.ModelAdmin):
    """What was notified, read-only. Deleting a row lets that notification go out again."""

    list_display = ("sent_at", "kind", "target", "threshold", "period", "recipients")
    list_filter = ("kind",)
    search_fields = ("target", "period")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
