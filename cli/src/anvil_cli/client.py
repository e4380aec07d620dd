"""Anvil's public HTTP API, spoken with the standard library: JSON requests and server-sent event
streams. Every way a request can fail ends as an ``ApiError`` whose message is one line a person
can act on (``anvil`` prints it and exits non-zero), never a traceback."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click

from anvil_cli import __version__

USER_AGENT = f"anvil-cli/{__version__}"
MAX_ERROR_BODY = 65536
FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)(?:\[\d+\])?: ")  # "parameters.top_p: ..."


class ApiError(click.ClickException):
    """A request that failed: refused by the server (``status`` set) or never answered."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, param=None
    ) -> None:
        self.detail, self.status, self.code, self.param = one_line(message), status, code, param
        super().__init__(self._format())

    def _format(self) -> str:
        said = [f"HTTP {self.status}" if self.status else None, self.code]
        said = ", ".join(str(part) for part in said if part)
        return f"{self.detail} ({said})" if said else self.detail

    def with_params(self, names: dict[str, str]) -> ApiError:
        """The same error with the API's field names replaced by the CLI's option names."""
        if self.param not in names:
            return self
        detail = self.detail
        if detail.startswith(f"{self.param}: "):
            detail = detail[len(self.param) + 2 :]
        renamed = f"{names[self.param]}: {detail}"
        return ApiError(renamed, status=self.status, code=self.code, param=names[self.param])


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def server_root(base_url: str) -> str:
    """The server's root URL from what the user configured: the root itself or the API's base
    URL as OpenAI clients take it (``https://host/api/v1``)."""
    url = base_url.strip().rstrip("/")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.ClickException(
            f"The base URL must start with http:// or https:// and name a host, not {base_url!r}."
        )
    for suffix in ("/api/v1", "/api"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    data: object


class Client:
    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.root = server_root(base_url)
        self.timeout = timeout

    def get(self, path: str, *, key: str | None = None, query: dict | None = None) -> Answer:
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        with self._open("GET", path, key=key) as response:
            return self._answer(response)

    def post(self, path: str, body: dict, *, key: str | None = None) -> Answer:
        with self._open("POST", path, key=key, body=body) as response:
            return self._answer(response)

    def delete(self, path: str, *, key: str | None = None, query: dict | None = None) -> Answer:
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        with self._open("DELETE", path, key=key) as response:
            return self._answer(response)

    @contextmanager
    def stream(self, path: str, body: dict, *, key: str) -> Iterator[Iterator[str]]:
        """The lines of a server-sent event stream, without their line ends."""
        with self._open("POST", path, key=key, body=body, accept="text/event-stream") as answer:
            yield self._lines(answer)

    def _lines(self, response) -> Iterator[str]:
        while True:
            try:
                line = response.readline()
            except (OSError, http.client.HTTPException) as exc:
                raise self._failure(exc) from None
            if not line:
                return
            yield line.decode("utf-8", "replace").rstrip("\r\n")

    @contextmanager
    def _open(self, method: str, path: str, *, key, body=None, accept="application/json"):
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - server_root allows http(s) only
            self.root + path, data=data, headers=headers, method=method
        )
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310
        except urllib.error.HTTPError as exc:
            with exc:
                raise refusal(exc.code, exc.reason, _read_some(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._failure(exc) from None
        with response:
            yield response

    def _answer(self, response) -> Answer:
        try:
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._failure(exc) from None
        try:
            data = json.loads(content)
        except ValueError:
            raise ApiError(
                f"The server at {self.root} did not answer with JSON: is it an Anvil server?"
            ) from None
        headers = {name.lower(): value for name, value in response.headers.items()}
        return Answer(response.status, headers, data)

    def _failure(self, exc: BaseException) -> ApiError:
        """A request that got no complete answer: why, in a person's words."""
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        where = f"the Anvil server at {self.root}"
        if isinstance(reason, TimeoutError | socket.timeout):
            return ApiError(f"No answer from {where} within {self.timeout:g} s (timed out).")
        if isinstance(reason, ConnectionRefusedError):
            return ApiError(f"Can not reach {where}: connection refused. Is the URL right?")
        if isinstance(reason, socket.gaierror):
            return ApiError(f"Can not reach {where}: unknown host.")
        if isinstance(reason, ssl.SSLError):
            return ApiError(f"Can not talk to {where} securely: {reason}.")
        if isinstance(reason, ConnectionError | http.client.HTTPException):
            return ApiError(f"The connection to {where} broke off ({type(reason).__name__}).")
        return ApiError(f"Can not reach {where}: {reason}.")


def _read_some(response) -> bytes:
    try:
        return response.read(MAX_ERROR_BODY)
    except (OSError, http.client.HTTPException):
        return b""


def refusal(status: int, reason: str, content: bytes) -> ApiError:
    """The server's error answer: its OpenAI-shaped message when it sent one, or the jobs API's
    ``{"success": false, "error": "field: what is wrong"}`` (the field becomes ``param``)."""
    try:
        error = json.loads(content)["error"]
        if isinstance(error, str) and error.strip():
            field = FIELD.match(error)
            message, code, param = error, None, field.group(1) if field else None
        else:
            message, code, param = error["message"], error.get("code"), error.get("param")
    except (ValueError, KeyError, TypeError):
        message, code, param = reason or "The server refused the request.", None, None
    return ApiError(str(message), status=status, code=code, param=param)
