from __future__ import annotations

from django.contrib import admin
from django.db import transaction

from apps.catalog.models import Backend, CatalogModel
from apps.catalog.tasks import probe_backends


@admin.register(Backend)
class BackendAdmin(admin.ModelAdmin):
    list_display = ("name", "base_url", "api_key_env", "tokenize")
    search_fields = ("name",)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # A new or changed URL or secret is probed at once rather than at the next beat.
        transaction.on_commit(lambda: probe_backends.delay(backend_id=obj.pk, force=True))


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "backend",
        "prompt_price",
        "completion_price",
        "context_window",
        "max_concurrency",
        "queue_size",
        "active",
        "healthy",
        "last_checked_at",
    )
    list_filter = ("active", "healthy", "kind", "backend")
    search_fields = ("name", "upstream_model")
    readonly_fields = ("healthy", "last_checked_at")
