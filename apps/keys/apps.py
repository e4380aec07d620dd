from __future__ import annotations

from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "apps.keys"
    label = "keys"

    def ready(self) -> None:
        from apps.keys import (
            receivers,  # noqa: F401 (connects the receivers)
            schema,  # noqa: F401 (registers the OpenAPI auth extensions)
        )
