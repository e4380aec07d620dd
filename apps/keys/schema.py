"""How the keys' authentication classes (``apps.keys.authentication``) appear in the OpenAPI
document (Swagger's Authorize)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ManagementKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.keys.authentication.ManagementKeyAuthentication"
    name = "ManagementKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A management key (anvm-…), created on the portal's Management "
            "keys page. It can only create API keys. While its owner's account is deactivated "
            "it is refused with 401 `account_disabled`.",
        }


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.keys.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (anv-…), created on the portal's API keys page. While "
            "its owner's account is deactivated it is refused with 401 `account_disabled`.",
        }


class SessionOnlyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.keys.authentication.SessionOnlyAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "Your portal session: sign in in this browser first.",
        }
