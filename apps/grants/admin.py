from __future__ import annotations

from django.contrib import admin
from django.db import transaction

from apps.grants.models import Grant
from apps.grants.signals import grant_saved

# The stored values ``grant_saved`` carries as ``before``.
SENT_BEFORE = ("credits_allocated", "valid_from", "valid_until")


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
        """Saving tells the apps above, in the same transaction (``grant_saved``): a change of
        the credit pool (or a new grant's pool) goes into the audit log, and new validity
        dates reach the gateway at once (its keys' cache entries, which carry the grant, are
        dropped)."""
        stored = Grant.objects.filter(pk=obj.pk).values(*SENT_BEFORE)
        before = stored.first() if change else None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            grant_saved.send(sender=Grant, grant=obj, actor=request.user, before=before)
