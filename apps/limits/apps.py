from __future__ import annotations

from django.apps import AppConfig


class LimitsConfig(AppConfig):
    """Members' monthly limits as grant admins set them: for one member or for all at once,
    with the history of every change. The credit holds in ``apps.usage`` enforce them."""

    name = "apps.limits"
    label = "limits"
    verbose_name = "Member limits"

    def ready(self) -> None:
        from apps.limits import receivers  # noqa: F401 (connects the receivers)
