from __future__ import annotations

from django.apps import AppConfig


class ApiConfig(AppConfig):
    """DRF plumbing shared by every app's ``apis.py``: errors, authentication, schema."""

    name = "apps.api"
    label = "api"

    def ready(self) -> None:
        from apps.api import schema  # noqa: F401  (registers the OpenAPI auth extensions)
