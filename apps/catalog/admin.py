from __future__ import annotations

from django.contrib import admin

from apps.catalog.models import Backend, CatalogModel


@admin.register(Backend)
class BackendAdmin(admin.ModelAdmin):
    list_display = ("name", "base_url", "api_key_env")
    search_fields = ("name",)


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
    )
    list_filter = ("active", "kind", "backend")
    search_fields = ("name", "upstream_model")
