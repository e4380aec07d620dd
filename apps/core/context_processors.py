from __future__ import annotations

from django.conf import settings


def portal(request) -> dict:
    return {
        "oidc_enabled": settings.OIDC_ENABLED,
        "oidc_label": getattr(settings, "OIDC_OP_LABEL", ""),
    }
