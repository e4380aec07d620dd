"""Institutional sign-in through OpenID Connect (the authorization-code flow, with PKCE).

mozilla-django-oidc runs the protocol's steps; this module gives it what Anvil decides:

- the provider's endpoints come from ``apps.accounts.provider`` (discovery or settings);
- the ID token is checked by ``apps.accounts.tokens`` (signature with or without a ``kid``,
  issuer, audience, lifetime, nonce);
- the claims become a person through ``apps.accounts.services.person_sign_in`` (issuer and
  subject, never e-mail alone);
- every way a sign-in can fail ends on a page that says what happened, never an error 500;
- signing out of Anvil also ends the provider's session where it has an end-session endpoint.

All of it answers 404 / does nothing while ``OIDC_ENABLED`` is off.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.generic import View
from mozilla_django_oidc import middleware as oidc_middleware
from mozilla_django_oidc import views as oidc_views
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from apps.accounts.claims import SignInRefused, profile_from_claims
from apps.accounts.provider import ProviderUnavailable, provider
from apps.accounts.services import person_sign_in
from apps.accounts.tokens import TokenRefused, id_token_claims

logger = logging.getLogger(__name__)

BACKEND = "apps.accounts.oidc.ProviderBackend"
# Answers to a silent renewal (prompt=none) that mean: sign in again, with the provider's page.
SIGN_IN_AGAIN = {"login_required", "interaction_required", "consent_required"}


class ProviderBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend with the provider's endpoints read when a sign-in needs
    them (Django makes a backend for each signed-in request; that must not reach the
    provider), Anvil's token check, and Anvil's claims → person."""

    def __init__(self, *args, **kwargs) -> None:
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.UserModel = get_user_model()

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:
        return provider().token_endpoint

    def authenticate(self, request, **kwargs):
        if not settings.OIDC_ENABLED:
            return None
        return super().authenticate(request, **kwargs)

    def verify_token(self, token, **kwargs) -> dict:
        return id_token_claims(token, nonce=kwargs.get("nonce"))

    def get_userinfo(self, access_token, id_token, payload) -> dict:
        """The userinfo endpoint's claims (JSON or a signed JWT), which must be about the ID
        token's subject; none when the provider has no such endpoint."""
        endpoint = provider().userinfo_endpoint
        if not endpoint:
            return {}
        response = requests.get(
            endpoint,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=settings.OIDC_TIMEOUT,
        )
        response.raise_for_status()
        if response.headers.get("content-type", "").startswith("application/jwt"):
            info = id_token_claims(response.text, nonce=None)
        else:
            info = response.json()
        if not isinstance(info, dict) or info.get("sub") != payload.get("sub"):
            raise TokenRefused("the userinfo answer is about another subject")
        return info

    def get_or_create_user(self, access_token, id_token, payload):
        info = self.get_userinfo(access_token, id_token, payload)
        claims = {**payload, **info, "iss": payload["iss"], "sub": payload["sub"]}
        return person_sign_in(profile=profile_from_claims(claims))


def sign_in_failed(request, message: str, *, status: int):
    """The page every failed sign-in ends on. Someone signed in through the provider is signed
    out: a failed renewal means the provider no longer vouches for them."""
    if request.user.is_authenticated and request.session.get(auth.BACKEND_SESSION_KEY) == BACKEND:
        auth.logout(request)
    context = {"message": message, "label": settings.OIDC_OP_LABEL}
    return render(request, "accounts/sign_in_failed.html", context, status=status)


UNREACHABLE = (
    "{label} could not be reached, or answered in a way Anvil did not expect. Try again in a "
    "few minutes."
)


class SignInStartView(oidc_views.OIDCAuthenticationRequestView):
    """Sends the browser to the provider with a fresh ``state``, ``nonce`` and PKCE challenge."""

    def __init__(self, **kwargs) -> None:
        View.__init__(self, **kwargs)  # mozilla-django-oidc's reads the endpoint from settings
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request):
        if not settings.OIDC_ENABLED:
            raise Http404("Institutional sign-in is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider().authorization_endpoint
        except ProviderUnavailable as exc:
            logger.warning("OpenID Connect sign-in could not start: %s", exc)
            return sign_in_failed(
                request, UNREACHABLE.format(label=settings.OIDC_OP_LABEL), status=502
            )
        return super().get(request)


class SignInCallbackView(oidc_views.OIDCAuthenticationCallbackView):
    """Where the provider sends the browser back: the code is exchanged, the token checked and
    the person signed in; each failure gets its page."""

    def get(self, request):
        if not settings.OIDC_ENABLED:
            raise Http404("Institutional sign-in is not configured.")
        label = settings.OIDC_OP_LABEL
        try:
            return super().get(request)
        except SignInRefused as exc:
            return sign_in_failed(request, exc.message, status=403)
        except SuspiciousOperation:
            return self.start_again()
        except TokenRefused as exc:
            logger.warning("OpenID Connect token refused: %s", exc)
            message = f"The answer from {label} could not be verified, so you were not signed in."
            return sign_in_failed(request, message, status=400)
        except (ProviderUnavailable, requests.RequestException, ValueError) as exc:
            logger.warning("OpenID Connect sign-in failed at the provider: %s", exc)
            return sign_in_failed(request, UNREACHABLE.format(label=label), status=502)

    def login_failure(self):
        request = self.request
        error = request.GET.get("error")
        if error in SIGN_IN_AGAIN:
            messages.info(
                request, f"Your session at {settings.OIDC_OP_LABEL} ended: sign in again."
            )
            return HttpResponseRedirect(reverse("account_login"))
        if error:
            said = request.GET.get("error_description") or error
            message = f"{settings.OIDC_OP_LABEL} did not sign you in: {said[:300]}"
            return sign_in_failed(request, message, status=403)
        return self.start_again()

    def start_again(self):
        message = (
            "This sign-in was not started in this browser, or it was finished already. "
            "Start again from the sign-in page."
        )
        return sign_in_failed(self.request, message, status=400)


class SessionRefresh(oidc_middleware.SessionRefresh):
    """Once a signed-in person's ID token is ``OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS`` old, their
    next page is a silent round trip to the provider (``prompt=none``), as mozilla-django-oidc
    does; settings are read per request, and nothing happens while the provider is down."""

    def process_request(self, request):
        if not settings.OIDC_ENABLED or not self.is_refreshable_url(request):
            return None
        try:
            self.OIDC_OP_AUTHORIZATION_ENDPOINT = provider().authorization_endpoint
        except ProviderUnavailable:
            return None
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_SCOPES = settings.OIDC_RP_SCOPES
        return super().process_request(request)


def provider_logout_url(request, *, then: str) -> str | None:
    """Where to send someone who signs out, so the provider ends its session too and sends
    them back to ``then``; None when they did not sign in through it or it has no endpoint."""
    id_token = request.session.get("oidc_id_token")
    if not (settings.OIDC_ENABLED and id_token):
        return None
    try:
        endpoint = provider().end_session_endpoint
    except ProviderUnavailable:
        return None
    if not endpoint:
        return None
    query = urlencode(
        {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": request.build_absolute_uri(then),
            "client_id": settings.OIDC_RP_CLIENT_ID,
        }
    )
    return f"{endpoint}?{query}"
