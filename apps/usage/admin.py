"""Admin views of the accounting. Counters, holds and the ledger are read-only here: they change
only through ``apps.usage.ledger`` and its sweeper (``manage.py shell``:
``counters_reconcile(repair=True)`` mends counters). Member limits are in ``apps.limits.admin``."""

from __future__ import annotations

from django.contrib import admin

from apps.usage.models import Hold, KeyMonthCounter, LedgerEntry, MemberMonthCounter


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "created", "grant", "api_key", "user", "model", "prompt_tokens", "completion_tokens",
        "credits", "outcome", "latency_ms", "estimated", "capped",
    )  # fmt: skip
    list_filter = ("outcome", "estimated", "capped", "period")
    list_select_related = ("grant", "api_key", "user", "model")
    search_fields = ("grant__identifier", "user__username", "api_key__lookup_prefix", "=request_id")
    date_hierarchy = "created"
    ordering = ("-created",)
    show_full_result_count = False  # the ledger grows to millions of rows


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("pk", "created", "expires_at", "grant", "api_key", "user", "model", "amount")
    list_select_related = ("grant", "api_key", "user", "model")
    ordering = ("created",)


@admin.register(KeyMonthCounter)
class KeyMonthCounterAdmin(ReadOnlyAdmin):
    list_display = ("api_key", "period", "used", "held")
    list_select_related = ("api_key",)
    list_filter = ("period",)
    search_fields = ("api_key__lookup_prefix", "api_key__name")


@admin.register(MemberMonthCounter)
class MemberMonthCounterAdmin(ReadOnlyAdmin):
    list_display = ("grant", "user", "period", "used", "held")
    list_select_related = ("grant", "user")
    list_filter = ("period",)
    search_fields = ("grant__identifier", "user__username")
