from __future__ import annotations

from django.contrib import admin

from apps.grants.models import Grant


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
    readonly_fields = ("public_id", "credits_used", "credits_held")
    filter_horizontal = ("allowed_models",)
