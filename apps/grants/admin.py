from __future__ import annotations

from django.contrib import admin
from django.db import transaction

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.grants.models import Grant
from apps.keys.services import api_keys_forget_grant


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    list_display = (
        "identifier",
        "team",
        "credits_allocated",
        "credits_used",
        "credits_held",
        "valid_from",
        "valid_until",
    )
    list_filter = ("team",)
    search_fields = ("identifier", "team__name")
    readonly_fields = (
        "public_id",
        "credits_used",
        "credits_held",
        "collective_monthly_limit",
        "collective_limit_set_at",
    )
    filter_horizontal = ("allowed_models",)

    def save_model(self, request, obj, form, change) -> None:
        """Saving records a change of the credit pool (or a new grant's pool) in the audit
        log, in the same transaction. New validity dates reach the gateway at once: its keys'
        cache entries, which carry the grant, are dropped."""
        stored = Grant.objects.filter(pk=obj.pk).values_list("credits_allocated", flat=True)
        before = stored.first() if change else None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if change and {"valid_from", "valid_until"} & set(form.changed_data):
                api_keys_forget_grant(grant=obj)
            if not change or before != obj.credits_allocated:
                audit_record(
                    actor=request.user,
                    action=AuditAction.CREDITS_ALLOCATED,
                    grant=obj,
                    target=f"grant {obj.identifier}",
                    before={"credits_allocated": before},
                    after={"credits_allocated": obj.credits_allocated},
                )
