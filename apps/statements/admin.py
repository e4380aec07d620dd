from __future__ import annotations

from django.contrib import admin

from apps.statements.models import Statement, StatementLine


class LineInline(admin.TabularInline):
    model = StatementLine
    fields = ("model_name", "requests", "prompt_tokens", "completion_tokens", "credits", "capped")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Statement)
class StatementAdmin(admin.ModelAdmin):
    """Closed statements, read-only: they are written once by the month's closing."""

    list_display = ("period", "grant", "kind", "user", "api_key", "requests", "credits", "capped")
    list_filter = ("period", "kind")
    search_fields = ("grant__identifier", "user__username", "api_key__name")
    inlines = [LineInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
