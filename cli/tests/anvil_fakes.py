"""What the CLI's own tests run with, from the standard library alone (they must pass where only
the CLI is installed): ``anvil`` as a subprocess of this interpreter with a home directory of its
own, and a stand-in Anvil on loopback that answers canned replies and records the requests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Home:
    """A temporary home directory; ``run`` calls ``anvil`` with it and no ANVIL_* variable but
    those given."""

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory()
        self.path = Path(self._directory.name)
        self.config_file = self.path / ".config" / "anvil" / "config"

    def close(self) -> None:
        self._directory.cleanup()

    def run(self, *args: str, input: str | None = None, **env: str):
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
        environment.update(HOME=str(self.path), XDG_CONFIG_HOME=str(self.path / ".config"))
        environment.update(env)
        return subprocess.run(  # noqa: S603 - this interpreter, the installed CLI
            [sys.executable, "-m", "anvil_cli", *args],
            input=input,
            env=environment,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@dataclass
class Reply:
    status: int = 200
    body: object = None  # a dict or list is sent as JSON, bytes as they are
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] | None = None  # a stream: these lines, each with a blank line after


@dataclass
class Request:
    method: str
    path: str  # with the query
    headers: dict[str, str]
    body: object


class FakeAnvil:
    """``with FakeAnvil({"/api/health": Reply(...)}) as server``: serves on ``server.url``;
    ``server.requests`` lists what came. A route may name its method too (``"DELETE /path"``). An
    unknown path is a 404 in OpenAI's error shape."""

    def __init__(self, routes: dict[str, Reply]) -> None:
        self.routes, self.requests = routes, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._answer(self)

            do_POST = do_DELETE = do_GET

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeAnvil:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        self.requests.append(Request(handler.command, handler.path, dict(handler.headers), body))
        missing = Reply(404, {"error": {"message": "No such path.", "code": "not_found"}})
        path = handler.path.split("?")[0]
        reply = self.routes.get(f"{handler.command} {path}") or self.routes.get(path, missing)
        if reply.events is not None:
            content = "".join(f"{line}\n\n" for line in reply.events).encode()
            kind = "text/event-stream"
        elif isinstance(reply.body, bytes):
            content, kind = reply.body, "text/html"
        else:
            content, kind = json.dumps(reply.body).encode(), "application/json"
        handler.send_response(reply.status)
        handler.send_header("Content-Type", kind)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        if reply.events is None:
            handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()  # a stream ends when the connection closes (HTTP/1.0)
        handler.wfile.write(content)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
