"""Admin views of the accounting. Counters, holds and the ledger are read-only here: they change
only through ``apps.usage.services`` (``manage.py shell``: ``counters_reconcile(repair=True)``
mends counters). Member limits are set through ``apps.limits.services.member_limit_change``
(``member_limit_set`` plus the history of changes and the audit log)."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from apps.limits.services import member_limit_change
from apps.teams.models import Membership
from apps.usage.models import (
    Hold,
    KeyMonthCounter,
    LedgerEntry,
    MemberLimit,
    MemberMonthCounter,
)


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
    search_fields = ("grant__identifier", "user__username", "api_key__lookup_prefix")
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


class MemberLimitForm(forms.ModelForm):
    class Meta:
        model = MemberLimit
        fields = ("grant", "user", "monthly_limit")

    def clean(self):
        cleaned = super().clean()
        grant = cleaned.get("grant") or getattr(self.instance, "grant", None)
        user = cleaned.get("user") or getattr(self.instance, "user", None)
        if grant and user and not Membership.objects.filter(team=grant.team, user=user).exists():
            raise forms.ValidationError(f"{user} is not a member of {grant}'s team.")
        return cleaned


@admin.register(MemberLimit)
class MemberLimitAdmin(admin.ModelAdmin):
    form = MemberLimitForm
    list_display = ("grant", "user", "monthly_limit", "changed_by", "changed_at")
    list_select_related = ("grant", "user", "changed_by")
    search_fields = ("grant__identifier", "user__username")
    readonly_fields = ("changed_by", "changed_at")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("grant", "user") if obj else ())

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting would lift a limit without a trace in its history: save it empty instead.
        return False

    def save_model(self, request, obj, form, change) -> None:
        # Through the grant admins' service, so the change is in the history and audit log.
        member_limit_change(
            grant=obj.grant, user=obj.user, monthly_limit=obj.monthly_limit, changed_by=request.user
        )
        obj.pk = MemberLimit.objects.get(grant=obj.grant, user=obj.user).pk
