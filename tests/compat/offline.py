"""Keeping the compatibility suite's clients on loopback: every HTTP client that honours the
proxy variables (httpx, requests, aiohttp with trust_env) sends a request for any address but
loopback's to a closed loopback port, where it fails at once, and the test with it."""

from __future__ import annotations

# Where any request to an address other than loopback would go: a closed port, so it fails at
# once and the test with it.
NOWHERE = "http://127.0.0.1:9"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
LOOPBACK = "127.0.0.1,localhost,::1"


def offline_env() -> dict[str, str]:
    """Proxy variables that keep every HTTP client that honours them (httpx, requests, aiohttp
    with trust_env) on loopback."""
    env = {name: NOWHERE for name in PROXY_VARIABLES}
    env.update({name.lower(): NOWHERE for name in PROXY_VARIABLES})
    env.update(NO_PROXY=LOOPBACK, no_proxy=LOOPBACK)
    return env
