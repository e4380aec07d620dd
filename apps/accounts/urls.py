"""Anvil's own versions of allauth pages, ahead of allauth's URLs (portal/urls.py)."""

from __future__ import annotations

from django.urls import path, re_path

from apps.accounts import views

urlpatterns = [
    path("password/set/", views.password_set, name="account_set_password"),
    re_path(
        r"^password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
        views.password_reset_from_key,
        name="account_reset_password_from_key",
    ),
]
