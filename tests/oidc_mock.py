"""oidc-provider-mock (from PyPI) served over real HTTP on 127.0.0.1, for the sign-in tests.

The mock is a real OpenID Connect provider built on Authlib: a discovery document, a JWKS, an
authorization endpoint whose page signs in whoever's ``sub`` is typed in, a token endpoint
(RS256 ID tokens whose header has no ``kid``), userinfo and an end-session page. People and
their claims are set through its ``PUT /users/<sub>``.

``MockProvider`` serves it with werkzeug in a thread, behind a small WSGI layer of our own that
notes what it was asked (``requests``, ``authorize_requests``, ``discovery_reads``,
``token_answers``) and, for the refusal tests, stands between the mock and Anvil as an
attacker or a misconfigured proxy would. The mock itself cannot be made to sign a wrong token,
so:

- ``tamper`` changes the payload of the ID token the mock signed, keeping its signature;
- ``issuer_host`` sends Anvil's token request to the mock under another host name: the mock
  names its issuer after the host it was asked on, so it signs, with its own key, a token from
  another issuer (as a provider reached under two names does);
- ``audience`` asks the mock for the code and the token as another client (its ``client_id``
  changed on the way in): a token the mock really issued, for someone else;
- ``replay`` answers Anvil's token request with an earlier answer (its ID token and nonce
  included) instead of the mock's.

The mock's pages link a stylesheet on a CDN; the link is taken out, so that a browser showing
them reaches nothing beyond 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import warnings
from urllib.parse import parse_qsl, urlencode

import requests
import werkzeug.serving
from authlib.deprecate import AuthlibDeprecationWarning

from tests.idp import Account

with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)  # the mock uses Authlib's older API
    import oidc_provider_mock

AUTHORIZE = "/oauth2/authorize"
TOKEN = "/oauth2/token"
WELL_KNOWN = "/.well-known/openid-configuration"
OTHER_CLIENT = "another-client"
REMOTE_LINK = re.compile(rb'<link[^>]*href="https?://[^"]*"[^>]*>', re.S)


class _QuietHandler(werkzeug.serving.WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


class MockProvider:
    """oidc-provider-mock on 127.0.0.1 (``port`` 0: any free one), with the same interface as
    ``tests.idp.TestProvider`` where the tests need one: ``add_account``, ``issuer``,
    ``discovery_url``, ``authorize_requests``, ``nonces``, ``stop()``, and ``login_form`` for
    ``tests.signing_in.Browser``."""

    algorithm = "RS256"  # the only one the mock signs with
    __test__ = False  # not a pytest test class

    def __init__(self, port: int = 0) -> None:
        self.accounts: dict[str, Account] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of each, in order
        self.authorize_requests: list[dict] = []
        self.discovery_reads = 0
        self.token_answers: list[dict] = []  # the mock's own answers, before any change
        self.ended_sessions = 0
        self.tamper = False
        self.issuer_host: str | None = None
        self.audience: str | None = None
        self.replay: dict | None = None
        app = oidc_provider_mock.app(require_nonce=True)
        self.server = werkzeug.serving.make_server(
            "127.0.0.1", port, self._between(app), threaded=True, request_handler=_QuietHandler
        )
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.http = requests.Session()
        self.http.trust_env = False  # never a proxy between the tests and 127.0.0.1
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Down: connections to it are refused from now on."""
        self.server.shutdown()
        self.server.server_close()
        self.http.close()

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}{WELL_KNOWN}"

    @property
    def nonces(self) -> list[str]:
        return [ask["nonce"] for ask in self.authorize_requests if ask.get("nonce")]

    def add_account(self, username: str, **claims) -> Account:
        """A person at the provider; change ``claims`` between sign-ins as their provider
        would (the mock is told at each sign-in)."""
        defaults = {
            "preferred_username": username,
            "email": f"{username}@uni.example.org",
            "email_verified": True,
            "given_name": username.title(),
            "family_name": "Tester",
        }
        account = Account(username, "", {**defaults, **claims})
        account.claims.setdefault("sub", f"sub-{secrets.token_hex(4)}-{username}")
        self.accounts[username] = account
        self.tell(account)
        return account

    def tell(self, account: Account) -> None:
        claims = {name: value for name, value in account.claims.items() if name != "sub"}
        url = f"{self.issuer}/users/{account.claims['sub']}"
        self.http.put(url, json=claims, timeout=10).raise_for_status()

    def login_form(self, page, username: str, password: str) -> tuple[str, dict] | None:
        """Where to post the mock's page to sign ``username`` in, and what: its form takes the
        person's ``sub`` (the mock has no passwords). None when ``page`` is not that page."""
        if not (page.url.startswith(f"{self.issuer}{AUTHORIZE}") and 'name="sub"' in page.text):
            return None
        account = self.accounts[username]
        self.tell(account)
        return page.url, {"sub": account.claims["sub"]}

    # Between the mock and Anvil.
    def _between(self, app):
        def application(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if not path.startswith("/users/"):  # the tests' own calls
                self.requests.append((environ["REQUEST_METHOD"], path))
            if path == WELL_KNOWN:
                self.discovery_reads += 1
            elif path == "/oauth2/end_session" and environ["REQUEST_METHOD"] == "GET":
                self.ended_sessions += 1
            elif path == AUTHORIZE:
                query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
                if environ["REQUEST_METHOD"] == "GET":
                    self.authorize_requests.append(query)
                if self.audience:
                    environ["QUERY_STRING"] = urlencode({**query, "client_id": self.audience})
            elif path == TOKEN:
                return self._token(app, environ, start_response)
            return _without_remote_links(app, environ, start_response)

        return application

    def _token(self, app, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = dict(parse_qsl(environ["wsgi.input"].read(length).decode()))
        if self.audience:
            form["client_id"] = self.audience
        body = urlencode(form).encode()
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = _Body(body), str(len(body))
        if self.issuer_host:
            environ["HTTP_HOST"] = self.issuer_host
        status, headers, answer = _call(app, environ)
        if status.startswith("200"):
            tokens = json.loads(answer)
            self.token_answers.append(dict(tokens))
            if self.replay is not None:
                tokens = dict(self.replay)
            if self.tamper:
                tokens["id_token"] = _tampered(tokens["id_token"])
            answer = json.dumps(tokens).encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(answer)))])
        return [answer]


class _Body:
    """A request body for the WSGI app, read once."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int = -1) -> bytes:
        data, self.data = (self.data, b"") if size < 0 else (self.data[:size], self.data[size:])
        return data

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def _call(app, environ) -> tuple[str, list, bytes]:
    """The app's whole answer to ``environ``: status, headers, body."""
    answer: dict = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, headers
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], body


def _without_remote_links(app, environ, start_response):
    status, headers, body = _call(app, environ)
    content_type = dict((k.lower(), v) for k, v in headers).get("content-type", "")
    if content_type.startswith("text/html"):
        body = REMOTE_LINK.sub(b"", body)
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return [body]


def _tampered(token: str) -> str:
    """The token with another subject in its payload and the mock's signature left as it was."""
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "someone-else"
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{changed}.{signature}"
