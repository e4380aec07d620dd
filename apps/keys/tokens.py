"""Key secrets: how they look, how they are made and how they are checked.

A secret is ``<visible prefix><lookup><body>``: the visible prefix names the kind of key
(``anv-`` API key, ``anvm-`` management key), the 12-character lookup finds the row, and the
40-character body carries the entropy. Only the lookup and an HMAC-SHA256 digest of the whole
secret (keyed by ``settings.API_KEY_PEPPER``) are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

from django.conf import settings

LOOKUP_LENGTH = 12
BODY_LENGTH = 40
BODY_ALPHABET = string.ascii_letters + string.digits
_SHAPE = re.compile(rf"([0-9a-f]{{{LOOKUP_LENGTH}}})[A-Za-z0-9]{{{BODY_LENGTH}}}")


@dataclass(frozen=True)
class NewSecret:
    secret: str
    lookup_prefix: str
    digest: str


def secret_digest(secret: str) -> str:
    pepper = settings.API_KEY_PEPPER.encode()
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, digest: str) -> bool:
    """Constant-time comparison of a presented secret with a stored digest."""
    return hmac.compare_digest(secret_digest(secret), digest)


def secret_generate(*, visible_prefix: str) -> NewSecret:
    lookup = secrets.token_hex(LOOKUP_LENGTH // 2)
    body = "".join(secrets.choice(BODY_ALPHABET) for _ in range(BODY_LENGTH))
    secret = f"{visible_prefix}{lookup}{body}"
    return NewSecret(secret=secret, lookup_prefix=lookup, digest=secret_digest(secret))


def secret_lookup(secret: str, *, visible_prefix: str) -> str | None:
    """The lookup part of a well-formed secret of this kind, or None (no query needed)."""
    if not isinstance(secret, str) or not secret.startswith(visible_prefix):
        return None
    match = _SHAPE.fullmatch(secret, len(visible_prefix))
    return match.group(1) if match else None
