from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings

from apps.accounts.oidc import provider_logout_url


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
