"""The OpenID Connect provider people sign in with: its issuer, its endpoints and the keys it
signs tokens with.

With ``OIDC_OP_DISCOVERY_URL`` they come from the provider's discovery document, read when a
server process starts (``read_at_start``, called by portal/asgi.py and portal/wsgi.py: uvicorn,
runserver) and kept for the life of the process. A failed read is not kept: when the provider
can not be read at start, the first sign-in reads it, and each sign-in after a failed one tries
again. Each ``OIDC_OP_*`` setting that is set overrides the document. The signing keys (JWKS)
are read at each sign-in, so a provider's key rotation needs no restart.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import jwt
import requests
from django.conf import settings

logger = logging.getLogger(__name__)

WELL_KNOWN = "/.well-known/openid-configuration"
KEY_TYPES = {"RS": "RSA", "ES": "EC"}


class ProviderUnavailable(Exception):
    """The provider could not be reached, or answered something that is not what it must be."""


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str


def provider() -> Provider:
    """The configured provider; ``ProviderUnavailable`` when its discovery document is needed
    and can not be read."""
    url = settings.OIDC_OP_DISCOVERY_URL
    document = dict(_discovery_document(url)) if url else {}

    def pick(setting: str, field: str) -> str:
        return getattr(settings, setting) or document.get(field) or ""

    return Provider(
        issuer=pick("OIDC_OP_ISSUER", "issuer"),
        authorization_endpoint=pick("OIDC_OP_AUTHORIZATION_ENDPOINT", "authorization_endpoint"),
        token_endpoint=pick("OIDC_OP_TOKEN_ENDPOINT", "token_endpoint"),
        userinfo_endpoint=pick("OIDC_OP_USER_ENDPOINT", "userinfo_endpoint"),
        jwks_uri=pick("OIDC_OP_JWKS_ENDPOINT", "jwks_uri"),
        end_session_endpoint=pick("OIDC_OP_LOGOUT_ENDPOINT", "end_session_endpoint"),
    )


def read_at_start() -> None:
    """Read and keep the provider's discovery document as a server process starts, so that
    sign-ins find it ready. Nothing happens without OpenID Connect or a discovery URL (so
    management commands, which do not call this, and processes without it reach no one). A
    provider that can not be read is logged, and the process starts all the same: the first
    sign-in reads the document then."""
    if not (settings.OIDC_ENABLED and settings.OIDC_OP_DISCOVERY_URL):
        return
    try:
        issuer = provider().issuer
    except ProviderUnavailable as exc:
        logger.warning(
            "OpenID Connect: the provider's discovery document could not be read at start; "
            "the first sign-in reads it. %s",
            exc,
        )
        return
    logger.info("OpenID Connect: read the discovery document of %s", issuer)


@functools.lru_cache(maxsize=4)
def _discovery_document(url: str) -> tuple[tuple[str, str], ...]:
    """The document's string fields. ``url`` is the document's address or the issuer's; the
    document must name as its issuer the address it was read from (OpenID Connect Discovery
    4.3), so a document can not speak for another provider."""
    if not url.rstrip("/").endswith(WELL_KNOWN):
        url = url.rstrip("/") + WELL_KNOWN
    document = fetch_json(url)
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") + WELL_KNOWN != url.rstrip("/"):
        raise ProviderUnavailable(f"the discovery document at {url} names issuer {issuer!r}")
    return tuple((name, value) for name, value in document.items() if isinstance(value, str))


def fetch_json(url: str, **kwargs) -> dict:
    """GET ``url`` within ``OIDC_TIMEOUT``; its JSON object, or ``ProviderUnavailable``."""
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT, **kwargs)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"{url}: {exc}") from None
    if not isinstance(document, dict):
        raise ProviderUnavailable(f"{url} answered JSON that is not an object")
    return document


def signing_keys(*, algorithm: str, kid: str | None) -> list[jwt.PyJWK]:
    """The provider's public keys that can have signed a token with this header: of the
    algorithm's key type, meant for signatures, and with the token's ``kid`` when it has one.
    A token without a ``kid`` (some providers send none) is checked against each candidate."""
    keys = fetch_json(provider().jwks_uri).get("keys")
    if not isinstance(keys, list):
        raise ProviderUnavailable("the provider's JWKS has no list of keys")
    found = []
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") != KEY_TYPES.get(algorithm[:2]):
            continue
        if key.get("use", "sig") != "sig" or key.get("alg", algorithm) != algorithm:
            continue
        if kid is not None and key.get("kid") != kid:
            continue
        try:
            found.append(jwt.PyJWK(key, algorithm=algorithm))
        except jwt.PyJWKError:
            continue  # a key this library can not read can not have signed the token
    return found
