"""Anvil's own versions of allauth pages, ahead of allauth's URLs (portal/urls.py)."""

from __future__ import annotations

from allauth.mfa.totp import views as totp_views
from csp.decorators import csp_update
from django.urls import path, re_path

from apps.accounts import views

urlpatterns = [
    path("password/set/", views.password_set, name="account_set_password"),
    re_path(
        r"^password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
        views.password_reset_from_key,
        name="account_reset_password_from_key",
    ),
    # allauth's page for setting up a second factor shows its QR code as a data: image, which
    # the portal's Content-Security-Policy (portal/settings.py) allows on this page only.
    path(
        "2fa/totp/activate/",
        csp_update({"img-src": ["data:"]})(totp_views.activate_totp),
        name="mfa_activate_totp",
    ),
]
