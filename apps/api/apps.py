from __future__ import annotations

from django.apps import AppConfig


class ApiConfig(AppConfig):
    """DRF plumbing shared by every app's ``apis.py``: the error shape and its handler, the
    JSON parser, serializer building blocks. Who is calling (a key or a session) is decided in
    ``apps.keys.authentication``; the URL table of /api/v1/ is ``portal.api_urls``."""

    name = "apps.api"
    label = "api"

    def ready(self) -> None:
        from apps.api import schema  # noqa: F401 (registers the OpenAPI field extensions)
