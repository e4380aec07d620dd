"""Member limits in the admin: staff set one through the grant admins' service, so the change
is in the history and the audit log; the history itself is read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from apps.limits.models import MemberLimit, MemberLimitChange
from apps.limits.services import member_limit_change
from apps.teams.models import Membership


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
