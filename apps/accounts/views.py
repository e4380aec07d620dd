"""allauth's pages that set a password, refused for an account that signs in only through the
identity provider: it has no Anvil password, and getting one through a reset link or the
password page would open a second way in that the provider does not control."""

from __future__ import annotations

from allauth.account import views as allauth_views
from django.shortcuts import render


def no_anvil_password(request):
    return render(request, "account/password_provider_only.html", status=403)


class PasswordSetView(allauth_views.PasswordSetView):
    def dispatch(self, request, *args, **kwargs):
        user = request.user
        if user.is_authenticated and user.signs_in_only_through_provider:
            return no_anvil_password(request)
        return super().dispatch(request, *args, **kwargs)  # allauth's: signed in only


class PasswordResetFromKeyView(allauth_views.PasswordResetFromKeyView):
    """Where a reset link leads, once allauth has found its account (``reset_user``)."""

    def get(self, request, *args, **kwargs):
        if self.reset_user.signs_in_only_through_provider:
            return no_anvil_password(request)
        return super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        if self.reset_user.signs_in_only_through_provider:
            return no_anvil_password(request)
        return super().post(request, *args, **kwargs)


password_set = PasswordSetView.as_view()
password_reset_from_key = PasswordResetFromKeyView.as_view()
