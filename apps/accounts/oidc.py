"""Institutional sign-in: people arriving through OpenID Connect get a local user matched by
e-mail, created on first sign-in with an academic affiliation."""

from __future__ import annotations

from mozilla_django_oidc.auth import OIDCAuthenticationBackend


class InstitutionOIDCBackend(OIDCAuthenticationBackend):
    def create_user(self, claims):
        username = claims.get("preferred_username") or claims.get("email")
        return self.UserModel.objects.create_user(
            username=username[:150],
            email=claims.get("email", ""),
            first_name=claims.get("given_name", ""),
            last_name=claims.get("family_name", ""),
        )
