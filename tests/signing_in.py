"""Signing in through an OpenID Connect provider on 127.0.0.1 as a browser would.

``Browser`` follows redirects from Anvil (Django's test client) to the provider (real HTTP on
127.0.0.1) and back, and fills in the provider's login page. Fixtures: ``idp`` (a running
provider), ``oidc`` (Anvil configured for it through its discovery document) and ``browser``.

``idp`` is oidc-provider-mock from PyPI (``tests.oidc_mock``) unless parametrized indirectly:
``"mock"`` is that one, ``"RS256"``, ``"ES256"`` or ``"HS256"`` our own provider
(``tests.idp``) signing with that algorithm, for what the mock cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.idp import CLIENT_ID, CLIENT_SECRET, PASSWORD, TestProvider
from tests.oidc_mock import MockProvider

BACKEND = "apps.accounts.oidc.ProviderBackend"
CALLBACK = "/oidc/callback/"
MOCK = "mock"


def configure_oidc(settings, provider: TestProvider | MockProvider, **overrides) -> None:
    """Anvil's OIDC_* settings for ``provider``, as an operator would set them; ``overrides``
    are more settings."""
    values = {
        "OIDC_ENABLED": True,
        "OIDC_RP_CLIENT_ID": CLIENT_ID,
        "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_RP_SIGN_ALGO": provider.algorithm,
        "OIDC_OP_DISCOVERY_URL": provider.discovery_url,
        "OIDC_OP_LABEL": "Test University",
        "OIDC_AFFILIATION_CLAIM": "affiliation",
        "OIDC_AFFILIATION_MAP": {
            "staff": "academic",
            "student": "academic",
            "company": "commercial",
        },
        "OIDC_TEAMS_CLAIM": "anvil_teams",
        "AUTHENTICATION_BACKENDS": [*settings.AUTHENTICATION_BACKENDS, BACKEND],
        **overrides,
    }
    for name, value in values.items():
        setattr(settings, name, value)


@dataclass
class Page:
    status: int
    url: str
    text: str


@dataclass
class Browser:
    client: object  # django.test.Client: Anvil, at http://testserver
    provider: TestProvider | MockProvider
    http: requests.Session = field(default_factory=requests.Session)
    visited: list[tuple[int, str]] = field(default_factory=list)

    def get(self, url: str, *, stop_at: str | None = None) -> Page:
        """The page at the end of ``url``'s redirects; with ``stop_at``, the first redirect to
        a URL with that path, not visited."""
        return self._follow("GET", url, None, stop_at=stop_at)

    def sign_in(self, username: str, password: str = PASSWORD, **options) -> Page:
        """From Anvil's sign-in button through the provider's login page (if it shows one)."""
        page = self.get("/oidc/authenticate/", **options)
        login = self.provider.login_form(page, username, password) if page.status == 200 else None
        if login is not None:
            page = self._follow("POST", *login, **options)
        return page

    def post(self, url: str, data: dict) -> Page:
        """The page at the end of a form's redirects."""
        return self._follow("POST", url, data)

    def _follow(self, method: str, url: str, data, *, stop_at: str | None = None) -> Page:
        url = urljoin("http://testserver/", url)
        for _ in range(12):
            status, location, text = self._request(method, url, data)
            self.visited.append((status, url))
            if status not in (301, 302, 303) or location is None:
                return Page(status, url, text)
            url, method, data = urljoin(url, location), "GET", None
            if stop_at is not None and urlsplit(url).path == stop_at:
                return Page(status, url, "")
        raise AssertionError(f"more than 12 redirects: {self.visited[-12:]}")

    def _request(self, method: str, url: str, data) -> tuple[int, str | None, str]:
        parts = urlsplit(url)
        if parts.hostname in (None, "testserver"):
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            response = self.client.get(path) if method == "GET" else self.client.post(path, data)
            return response.status_code, response.get("Location"), response.content.decode()
        response = self.http.request(method, url, data=data, allow_redirects=False, timeout=10)
        return response.status_code, response.headers.get("location"), response.text


@pytest.fixture
def idp(request):
    kind = getattr(request, "param", MOCK)
    provider = MockProvider() if kind == MOCK else TestProvider(algorithm=kind)
    yield provider
    provider.stop()


@pytest.fixture
def oidc(settings, idp) -> TestProvider | MockProvider:
    configure_oidc(settings, idp)
    return idp


@pytest.fixture
def browser(client, idp) -> Browser:
    browser = Browser(client, idp)
    browser.http.trust_env = False  # never a proxy between the tests and 127.0.0.1
    yield browser
    browser.http.close()
