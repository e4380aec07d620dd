"""Handing a new secret from the POST that created it to the page that shows it, once.

The secret is never stored on the server (not even in the session): the redirect carries it in
a signed cookie limited to that page's path and a couple of minutes; the page reads it, deletes
it in its own response and is marked no-store. A reload finds no cookie and shows no secret.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing

COOKIE = "anvil_new_secret"
SALT = "apps.keys.handover"
MAX_AGE_SECONDS = 120


def secret_hand_over(response, *, path: str, public_id, secret: str) -> None:
    value = signing.dumps({"id": str(public_id), "secret": secret}, salt=SALT)
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_SECONDS,
        path=path,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Strict",
    )


def secret_take(request, *, public_id) -> str | None:
    """The secret handed over for this key, if the cookie is there, valid and fresh."""
    try:
        data = signing.loads(request.COOKIES.get(COOKIE, ""), salt=SALT, max_age=MAX_AGE_SECONDS)
    except signing.BadSignature:
        return None
    return data.get("secret") if data.get("id") == str(public_id) else None


def secret_forget(response, *, path: str):
    """Delete the cookie in the browser, and keep the page out of every cache."""
    response.delete_cookie(COOKIE, path=path, samesite="Strict")
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
    return response
