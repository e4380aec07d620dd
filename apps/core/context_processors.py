from __future__ import annotations

from django.conf import settings
from django.urls import reverse


def portal(request) -> dict:
    """What the sign-in page offers: the identity provider's button when it is configured, the
    local form unless LOCAL_LOGIN is off (always on the way to the admin, for staff), sign-up
    while it is open."""
    on_way_to_admin = request.GET.get("next", "").startswith(reverse("admin:index"))
    return {
        "oidc_enabled": settings.OIDC_ENABLED,
        "oidc_label": settings.OIDC_OP_LABEL,
        "local_login_shown": settings.LOCAL_LOGIN or on_way_to_admin,
        "signup_open": settings.SIGNUP_OPEN and settings.LOCAL_LOGIN,
    }
