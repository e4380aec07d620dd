"""What the provider's claims say about a person, read with the OIDC_* settings.

The claims are the ID token's with the userinfo answer's on top (the provider's ``iss`` and
``sub`` always from the ID token). Nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field

from django.conf import settings

from apps.accounts.models import Affiliation

logger = logging.getLogger(__name__)

ROLES = ("manager", "member")
_NOT_IN_USERNAME = re.compile(r"[^\w.@+-]")


class SignInRefused(Exception):
    """The provider vouched for someone Anvil does not let in; the message says why, for them."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Profile:
    issuer: str
    subject: str
    username: str
    email: str
    email_verified: bool
    first_name: str
    last_name: str
    # None: the provider does not decide it (no OIDC_AFFILIATION_CLAIM / OIDC_TEAMS_CLAIM).
    affiliation: str | None = None
    teams: dict[str, str] | None = field(default=None)


def profile_from_claims(claims: dict) -> Profile:
    """The person the claims describe, or ``SignInRefused`` naming the claim that is missing or
    the e-mail address that is not verified."""
    for name in ["sub", *settings.OIDC_REQUIRED_CLAIMS]:
        if claims.get(name) in (None, "", []):
            raise SignInRefused(f"Your identity provider did not send the “{name}” claim.")
    email = str(claims.get("email") or "")
    verified = claims.get("email_verified") is True or claims.get("email_verified") == "true"
    if settings.OIDC_REQUIRE_VERIFIED_EMAIL and not (email and verified):
        raise SignInRefused(
            "Your identity provider has not verified your e-mail address. Verify it there, "
            "then sign in again."
        )
    return Profile(
        issuer=str(claims["iss"]),
        subject=str(claims["sub"]),
        username=_username(claims, email),
        email=email[:254],
        email_verified=verified,
        first_name=str(claims.get("given_name") or "")[:150],
        last_name=str(claims.get("family_name") or "")[:150],
        affiliation=_affiliation(claims) if settings.OIDC_AFFILIATION_CLAIM else None,
        teams=_teams(claims.get(settings.OIDC_TEAMS_CLAIM)) if settings.OIDC_TEAMS_CLAIM else None,
    )


def _username(claims: dict, email: str) -> str:
    """The username claim, else the e-mail address, else a name made from the subject."""
    wanted = str(claims.get(settings.OIDC_USERNAME_CLAIM) or email or "")
    wanted = _NOT_IN_USERNAME.sub("-", wanted)[:150]
    if wanted:
        return wanted
    return "user-" + hashlib.sha256(f"{claims['iss']} {claims['sub']}".encode()).hexdigest()[:12]


def _values(claim) -> list[str]:
    """A claim's values: a list, or one string of values separated by spaces or commas."""
    if isinstance(claim, list):
        return [str(value).strip() for value in claim if str(value).strip()]
    if isinstance(claim, str):
        return [value for value in re.split(r"[\s,]+", claim) if value]
    return []


def _affiliation(claims: dict) -> str:
    """Mapped through OIDC_AFFILIATION_MAP (case-insensitive). Commercial wins when the values
    map to both (it is the affiliation that may use fewer models); nothing mapped, or no claim,
    gives OIDC_AFFILIATION_DEFAULT."""
    mapping = {name.lower(): value for name, value in settings.OIDC_AFFILIATION_MAP.items()}
    values = _values(claims.get(settings.OIDC_AFFILIATION_CLAIM))
    mapped = {mapping.get(value.lower()) for value in values}
    if Affiliation.COMMERCIAL in mapped:
        return Affiliation.COMMERCIAL
    if Affiliation.ACADEMIC in mapped:
        return Affiliation.ACADEMIC
    return settings.OIDC_AFFILIATION_DEFAULT


def _teams(claim) -> dict[str, str]:
    """``["plg-team-42:manager", "plg-team-7"]`` → ``{"plg-team-42": "manager", "plg-team-7":
    "member"}``. A leading "/" (a group's path) is dropped; a team named twice gets the higher
    role; an entry with an unknown role is logged and skipped, so a typo grants nothing. An
    absent claim is no teams (providers leave out an empty one)."""
    teams: dict[str, str] = {}
    for value in _values(claim):
        name, colon, role = value.lstrip("/").rpartition(":")
        if not colon:
            name, role = role, "member"
        if role not in ROLES or not name:
            logger.warning("Teams claim entry %r has no known role; skipped", value)
            continue
        if teams.get(name) != "manager":
            teams[name] = role
    return teams
