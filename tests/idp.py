"""A small OpenID Connect provider of our own for tests, served over real HTTP on 127.0.0.1.

The sign-in tests run against oidc-provider-mock from PyPI (``tests.oidc_mock``); this one is
kept for what the mock cannot do: ES256 and HS256 tokens, tokens with a ``kid``, a provider's
own session (silent renewal with ``prompt=none``, its end-session endpoint), and ID tokens it
signs wrong on purpose (expired, no expiry, no nonce, a key outside its JWKS).

It does what Anvil needs of a provider and no more: a discovery document, a JWKS, an
authorization endpoint with a login page (and its own session cookie, for ``prompt=none``),
a token endpoint (authorization code with PKCE S256, client secret in the form or in Basic
auth), a userinfo endpoint and an end-session endpoint. ID tokens are signed RS256, ES256 or
HS256 (with the client secret); by default their header has no ``kid``, as some providers'
have none, and the JWKS also holds a second key of the same type that signs nothing (a
rotated-out key), so a verifier has to find the right key without being told.

Tests make it misbehave on purpose: ``id_token_changes`` is merged into the next ID tokens'
claims (another ``iss``, ``aud``, ``exp`` or ``nonce``; None leaves one out), ``tamper``
changes a signed token's payload, ``foreign_key`` signs with a key the JWKS does not have,
``stop()`` takes it down.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CLIENT_ID = "anvil-portal"
CLIENT_SECRET = "test-client-secret-not-for-production-0123456789"  # HS256 needs 32+ bytes
PASSWORD = "provider-password"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


@dataclass
class Account:
    username: str
    password: str
    claims: dict  # everything userinfo answers besides sub; change it between sign-ins


@dataclass
class Grant:
    """What an authorization code stands for until the token endpoint redeems it."""

    account: Account
    redirect_uri: str
    nonce: str | None
    challenge: str | None


def _new_key(algorithm: str):
    if algorithm.startswith("RS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm.startswith("ES"):
        return ec.generate_private_key(ec.SECP256R1())
    return None


def _public_jwk(key, algorithm: str, kid: str) -> dict:
    jwk = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(key.public_key()))
    return {**jwk, "use": "sig", "alg": algorithm, "kid": kid}


@dataclass
class TestProvider:
    algorithm: str = "RS256"
    with_kid: bool = False
    accounts: dict[str, Account] = field(default_factory=dict)
    id_token_changes: dict = field(default_factory=dict)
    tamper: bool = False
    foreign_key: bool = False
    # What happened, for tests to look at.
    authorize_requests: list[dict] = field(default_factory=list)
    nonces: list[str] = field(default_factory=list)
    ended_sessions: int = 0

    __test__ = False  # not a pytest test class

    def __post_init__(self) -> None:
        self.key = _new_key(self.algorithm)
        self.retired_key = _new_key(self.algorithm)
        self.codes: dict[str, Grant] = {}
        self.access_tokens: dict[str, Account] = {}
        self.sessions: dict[str, Account] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.provider = self
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Down: connections to it are refused from now on."""
        self.server.shutdown()
        self.server.server_close()

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def add_account(self, username: str, **claims) -> Account:
        defaults = {
            "preferred_username": username,
            "email": f"{username}@uni.example.org",
            "email_verified": True,
            "given_name": username.title(),
            "family_name": "Tester",
        }
        account = Account(username, PASSWORD, {**defaults, **claims})
        account.claims.setdefault("sub", f"sub-{secrets.token_hex(4)}-{username}")
        self.accounts[username] = account
        return account

    def login_form(self, page, username: str, password: str) -> tuple[str, dict] | None:
        """Where to post the login page to sign ``username`` in, and what (``tests.signing_in``
        fills it in); None when ``page`` is not the login page."""
        if not (page.url.startswith(self.issuer) and 'action="/authorize"' in page.text):
            return None
        form = {name: html.unescape(value) for name, value in HIDDEN.findall(page.text)}
        return f"{self.issuer}/authorize", {**form, "username": username, "password": password}

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.algorithm],
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> dict:
        if self.algorithm.startswith("HS"):
            return {"keys": []}
        return {
            "keys": [
                _public_jwk(self.retired_key, self.algorithm, "retired"),
                _public_jwk(self.key, self.algorithm, "current"),
            ]
        }

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": grant.account.claims["sub"],
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            "email": grant.account.claims.get("email"),
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(self.id_token_changes)
        claims = {name: value for name, value in claims.items() if value is not None}
        headers = {"kid": "current"} if self.with_kid else None
        if self.algorithm.startswith("HS"):
            key = CLIENT_SECRET
        else:
            key = _new_key(self.algorithm) if self.foreign_key else self.key
        token = jwt.encode(claims, key, algorithm=self.algorithm, headers=headers)
        if self.tamper:
            head, _, signature = token.split(".")
            changed = {**claims, "sub": "someone-else"}
            body = base64.urlsafe_b64encode(json.dumps(changed).encode()).rstrip(b"=").decode()
            token = f"{head}.{body}.{signature}"
        return token


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


LOGIN_PAGE = """<!doctype html><html><head><title>Test provider</title></head><body>
<h1>Test University sign-in</h1>{error}
<form method="post" action="/authorize">{hidden}
<label>Username <input name="username" id="username"></label>
<label>Password <input name="password" id="password" type="password"></label>
<button type="submit" id="kc-login">Sign in</button></form></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    server_version = "TestProvider/1"

    @property
    def provider(self) -> TestProvider:
        return self.server.provider

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        routes = {
            "/.well-known/openid-configuration": lambda: self.json(self.provider.discovery()),
            "/jwks": lambda: self.json(self.provider.jwks()),
            "/authorize": lambda: self.authorize(query),
            "/userinfo": self.userinfo,
            "/logout": lambda: self.logout(query),
        }
        routes.get(url.path, lambda: self.json({"error": "not_found"}, status=404))()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if self.path == "/authorize":
            self.log_in(form)
        elif self.path == "/token":
            self.token(form)
        else:
            self.json({"error": "not_found"}, status=404)

    # Authorization endpoint: the login page, or straight back with a code.
    def authorize(self, query: dict) -> None:
        self.provider.authorize_requests.append(query)
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            self.json({"error": "unauthorized_client"}, status=400)
            return
        account = self.provider.sessions.get(self.cookie())
        if account is not None and query.get("prompt") != "login":
            self.send_back(query, account)
        elif query.get("prompt") == "none":
            self.redirect(query["redirect_uri"], error="login_required", state=query.get("state"))
        else:
            self.login_page(query)

    def login_page(self, query: dict, error: str = "") -> None:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in query.items()
            if k not in ("username", "password")
        )
        error_html = f'<p class="error">{error}</p>' if error else ""
        self.page(LOGIN_PAGE.format(hidden=hidden, error=error_html))

    def log_in(self, form: dict) -> None:
        account = self.provider.accounts.get(form.get("username", ""))
        if account is None or account.password != form.get("password"):
            self.login_page(form, error="Invalid username or password.")
            return
        session = secrets.token_urlsafe(16)
        self.provider.sessions[session] = account
        self.send_back(form, account, cookie=session)

    def send_back(self, query: dict, account: Account, cookie: str | None = None) -> None:
        code = secrets.token_urlsafe(16)
        if query.get("nonce"):
            self.provider.nonces.append(query["nonce"])
        self.provider.codes[code] = Grant(
            account=account,
            redirect_uri=query["redirect_uri"],
            nonce=query.get("nonce"),
            challenge=query.get("code_challenge"),
        )
        self.redirect(query["redirect_uri"], code=code, state=query.get("state"), cookie=cookie)

    # Token endpoint: a code (once) for an ID token and an access token.
    def token(self, form: dict) -> None:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = self.headers.get("authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        if (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
            self.json({"error": "invalid_client"}, status=401)
            return
        grant = self.provider.codes.pop(form.get("code", ""), None)
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            self.json({"error": "invalid_grant"}, status=400)
            return
        if grant.challenge and _s256(form.get("code_verifier", "")) != grant.challenge:
            self.json({"error": "invalid_grant", "error_description": "PKCE"}, status=400)
            return
        access_token = secrets.token_urlsafe(24)
        self.provider.access_tokens[access_token] = grant.account
        answer = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": self.provider.id_token(grant),
        }
        self.json(answer)

    def userinfo(self) -> None:
        token = self.headers.get("authorization", "").removeprefix("Bearer ")
        account = self.provider.access_tokens.get(token)
        if account is None:
            self.json({"error": "invalid_token"}, status=401)
            return
        self.json(dict(account.claims))

    def logout(self, query: dict) -> None:
        self.provider.sessions.pop(self.cookie(), None)
        self.provider.ended_sessions += 1
        self.redirect(query.get("post_logout_redirect_uri", "/"), cookie="")

    # Answers.
    def cookie(self) -> str:
        found = re.search(r"idp_session=([\w-]+)", self.headers.get("cookie", ""))
        return found.group(1) if found else ""

    def redirect(self, to: str, *, cookie: str | None = None, **params) -> None:
        params = {name: value for name, value in params.items() if value is not None}
        self.send_response(302)
        separator = "&" if "?" in to else "?"
        self.send_header("Location", f"{to}{separator}{urlencode(params)}" if params else to)
        if cookie is not None:
            self.send_header("Set-Cookie", f"idp_session={cookie}; Path=/; HttpOnly")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def page(self, text: str) -> None:
        self.body(200, "text/html; charset=utf-8", text.encode())

    def json(self, value: dict, status: int = 200) -> None:
        self.body(status, "application/json", json.dumps(value).encode())

    def body(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
