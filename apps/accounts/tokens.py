"""Checking the provider's ID token: its signature, issuer, audience, lifetime and nonce.

mozilla-django-oidc checks the signature only, does not check the audience, and needs a ``kid``
in the token's header to find the key; ``id_token_claims`` is the check Anvil uses instead.
"""

from __future__ import annotations

import jwt
from django.conf import settings

from apps.accounts.provider import provider, signing_keys

# Seconds of clock difference allowed between Anvil and the provider.
LEEWAY = 30


class TokenRefused(Exception):
    """The token failed a check; the message says which, for the log (not for the person)."""


def id_token_claims(token: str, *, nonce: str | None) -> dict:
    """The claims of a token that passes every check, or ``TokenRefused``. ``nonce`` is the one
    this browser's sign-in sent to the provider; None skips that check (a signed userinfo
    answer carries none)."""
    algorithm = settings.OIDC_RP_SIGN_ALGO
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"not a JWT: {exc}") from None
    if header.get("alg") != algorithm:
        raise TokenRefused(f"signed with {header.get('alg')!r}, not {algorithm}")
    if algorithm.startswith("HS"):
        keys = [settings.OIDC_RP_CLIENT_SECRET]
    else:
        keys = signing_keys(algorithm=algorithm, kid=header.get("kid"))
    claims = _decoded(token, keys=keys, algorithm=algorithm, with_nonce=nonce is not None)
    if nonce is not None and claims.get("nonce") != nonce:
        raise TokenRefused("its nonce is not the one this sign-in sent")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != settings.OIDC_RP_CLIENT_ID:
        raise TokenRefused("several audiences, and the authorized party is not Anvil")
    return claims


def _decoded(token: str, *, keys: list, algorithm: str, with_nonce: bool) -> dict:
    if not keys:
        raise TokenRefused("no key of the provider's JWKS fits its header")
    required = ["iss", "sub", "aud", "exp", "iat"] if with_nonce else ["iss", "sub", "aud"]
    for key in keys:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.OIDC_RP_CLIENT_ID,
                issuer=provider().issuer,
                leeway=LEEWAY,
                options={"require": required},
            )
        except jwt.InvalidSignatureError:
            continue  # another key of the set may have signed it
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(str(exc) or exc.__class__.__name__) from None
    raise TokenRefused("its signature fits none of the provider's keys")
