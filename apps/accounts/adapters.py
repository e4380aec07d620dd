from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings


class AccountAdapter(DefaultAccountAdapter):
    """Sign-up is open only when SIGNUP_OPEN is on; staff can always create users in the admin."""

    def is_open_for_signup(self, request) -> bool:
        return settings.SIGNUP_OPEN
