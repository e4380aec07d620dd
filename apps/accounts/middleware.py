"""Staff open the admin only after a second factor.

A staff member without TOTP set up is sent to set it up; one who has it but signed in without
it in this session (through the identity provider, whose own sign-in Anvil can not see) is
asked for a code first. django-allauth's MFA pages do both and come back to the admin page.
"""

from __future__ import annotations

from allauth.account.authentication import get_authentication_records
from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.deprecation import MiddlewareMixin
from django.utils.http import urlencode


def used_second_factor(request) -> bool:
    """Whether this session's sign-in, or a confirmation since, took a TOTP or recovery code."""
    records = get_authentication_records(request, request.user)
    return any(record.get("method") == "mfa" for record in records)


class StaffSecondFactorMiddleware(MiddlewareMixin):
    def process_request(self, request):
        admin = reverse("admin:index")
        if not request.path.startswith(admin) or request.path == reverse("admin:logout"):
            return None
        user = request.user
        if not (user.is_authenticated and user.is_staff):
            return None  # the admin's own login (through allauth) and permission checks
        next_query = urlencode({"next": request.get_full_path()})
        if not is_mfa_enabled(user, [Authenticator.Type.TOTP]):
            messages.info(request, "Staff need a second factor: set up an authenticator app.")
            return HttpResponseRedirect(f"{reverse('mfa_activate_totp')}?{next_query}")
        if not used_second_factor(request):
            return HttpResponseRedirect(f"{reverse('mfa_reauthenticate')}?{next_query}")
        return None
