"""Who is calling the REST API: a management key (only on the key-creation endpoint), an API key
(the billing status) or a signed-in browser session (the portal's own API). Each refuses the
other kinds of credential."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication

from apps.keys.auth import api_key_authenticate, bearer_secret, management_key_authenticate
from apps.keys.models import API_KEY_PREFIX, MANAGEMENT_KEY_PREFIX


class _BearerKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>``: the request acts as the key's owner; ``request.auth`` is
    the key. A missing header is left to the permission (401); a refusal answered 403 (the
    other kind of key, a grant outside its dates) is 403; a key of a deactivated person is 401
    ``account_disabled``."""

    label = ""

    @staticmethod
    def judge(secret: str):
        raise NotImplementedError

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        secret = bearer_secret(header)
        if secret is None:
            raise exceptions.AuthenticationFailed(
                f"Send the {self.label} as 'Authorization: Bearer <key>'.", code="invalid_api_key"
            )
        result = self.judge(secret=secret)
        if result.status == 403:
            raise exceptions.PermissionDenied(result.message, code=result.code)
        if not result.ok:  # invalid_api_key, or account_disabled (the owner is deactivated)
            raise exceptions.AuthenticationFailed(result.message, code=result.code)
        return result.key.owner, result.key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class ManagementKeyAuthentication(_BearerKeyAuthentication):
    """A management key (only on the key-creation endpoint); an API key is 403."""

    label = "management key"
    judge = staticmethod(management_key_authenticate)


class ApiKeyAuthentication(_BearerKeyAuthentication):
    """An API key (the billing status, jobs); a management key, or a key whose grant is outside
    its validity dates, is 403."""

    label = "API key"
    judge = staticmethod(api_key_authenticate)


class SessionOnlyAuthentication(SessionAuthentication):
    """The signed-in browser session (CSRF-checked), and never a key: keys can not manage keys."""

    def authenticate(self, request):
        secret = bearer_secret(request.META.get("HTTP_AUTHORIZATION"))
        if secret and secret.startswith(MANAGEMENT_KEY_PREFIX):
            raise exceptions.PermissionDenied(
                "A management key can only create API keys at /api/v1/management/api_keys/create.",
                code="wrong_key_kind",
            )
        if secret and secret.startswith(API_KEY_PREFIX):
            raise exceptions.PermissionDenied(
                "An API key can not manage keys; sign in to the portal.", code="wrong_key_kind"
            )
        return super().authenticate(request)
