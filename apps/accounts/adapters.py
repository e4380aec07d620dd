from __future__ import annotations

import time

from allauth.account import app_settings as account_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.authentication import get_authentication_records
from allauth.core import context as allauth_context
from allauth.utils import build_absolute_uri
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from apps.accounts.oidc import provider_logout_url


def signed_in_with_password_recently(request) -> bool:
    """Whether this session's sign-in took the password less than
    ``ACCOUNT_REAUTHENTICATION_TIMEOUT`` seconds ago (a sign-in through the identity provider
    took no Anvil password, and does not count)."""
    if request is None or not request.user.is_authenticated:
        return False
    records = get_authentication_records(request, request.user)
    since = time.time() - account_settings.REAUTHENTICATION_TIMEOUT
    return any(r.get("method") == "password" and r.get("at", 0) > since for r in records)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        """Open only with SIGNUP_OPEN and LOCAL_LOGIN; staff can always create users in the
        admin."""
        return settings.SIGNUP_OPEN and settings.LOCAL_LOGIN

    def get_logout_redirect_url(self, request) -> str:
        """Through the identity provider's end-session endpoint for someone who signed in
        there, so its session ends too."""
        local = super().get_logout_redirect_url(request)
        return provider_logout_url(request, then=local) or local

    def is_reauthentication_required(self, *, app: str, **kwargs) -> bool:
        """allauth asks for the password again before a change to the account's security
        (setting up TOTP, say) unless it was re-entered in the last few minutes; a sign-in
        with it that recent counts as well, so staff who set up their second factor right
        after signing in are not asked for the password they just typed."""
        if not super().is_reauthentication_required(app=app, **kwargs):
            return False
        return not signed_in_with_password_recently(allauth_context.request)

    def send_password_reset_mail(self, user, email: str, context: dict) -> None:
        """No reset link for an account that signs in only through the identity provider (it
        would give it an Anvil password): a mail that says to sign in there instead."""
        if not user.signs_in_only_through_provider:
            super().send_password_reset_mail(user, email, context)
            return
        request = allauth_context.request
        said = {
            "username": user.username,
            "label": settings.OIDC_OP_LABEL,
            "login_url": build_absolute_uri(request, reverse("account_login")),
        }
        self.send_mail("account/email/password_reset_provider_only", email, said)

    def set_password(self, user, password: str) -> None:
        """Every allauth page that sets a password comes here: never one for an account that
        signs in only through the identity provider (apps.accounts.views refuse it first)."""
        if user.signs_in_only_through_provider:
            raise PermissionDenied("This account signs in through the identity provider only.")
        super().set_password(user, password)
