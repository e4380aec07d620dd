"""The gateway's URLs are served by the lean handler (portal/asgi.py): no middleware, but the
same security headers and Host check, a Content-Length, the catalog's model name in streamed
chunks; a client that leaves cancels the view, as under Django's handler."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from django.http import HttpResponse, StreamingHttpResponse

from apps.gateway import handler
from apps.gateway.handler import GatewayHandler

served = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


@served
def test_it_answers_gateway_requests_with_the_security_headers(gateway):
    answer = httpx.post(
        f"{gateway.url}/chat/completions",
        headers={"authorization": f"Bearer {gateway.secret}"},
        json={"model": "chat-small", "messages": HELLO, "max_tokens": 4},
    )
    assert answer.status_code == 200
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["content-length"] == str(len(answer.content))
    refused = httpx.get(f"{gateway.url}/models", headers={"authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert refused.headers["x-content-type-options"] == "nosniff"


@served
def test_it_refuses_a_host_outside_allowed_hosts(gateway):
    answer = httpx.get(f"{gateway.url}/models", headers={"host": "evil.example"})
    assert answer.status_code == 400


@served
def test_it_streams_the_catalog_name_not_the_backends(gateway):
    gateway.add_model("renamed", upstream="chat-small")
    stream = gateway.client().chat.completions.create(
        model="renamed", messages=HELLO, max_tokens=8, stream=True
    )
    chunks = list(stream)
    assert chunks
    assert {chunk.model for chunk in chunks} == {"renamed"}


@served
def test_it_answers_a_chunked_body_over_the_limit_with_413(gateway, settings):
    settings.GATEWAY_MAX_BODY_BYTES = 100_000

    def chunks():
        for _ in range(40):
            yield b" " * 10_000

    answer = httpx.post(
        f"{gateway.url}/chat/completions",
        headers={"authorization": f"Bearer {gateway.secret}"},
        content=chunks(),
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"


# The handler driven directly, as uvicorn drives it, with a view standing in for the gateway's.

PATH = "/api/v1/chat/completions"


class Server:
    """uvicorn's side of one request: the body, then ``http.disconnect`` once the client
    leaves or the response is complete."""

    def __init__(self, scope: dict | None = None) -> None:
        self.scope = {
            "type": "http",
            "method": "POST",
            "path": PATH,
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", b"Bearer x")],
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            **(scope or {}),
        }
        self.sent: list[dict] = []
        self.body_read = False
        self.gone = asyncio.Event()

    async def receive(self) -> dict:
        if not self.body_read:
            self.body_read = True
            return {"type": "http.request", "body": b"{}"}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.gone.set()

    def start(self) -> asyncio.Task:
        async def serve():
            await GatewayHandler()(self.scope, self.receive, self.send)
            return asyncio.current_task().cancelling()

        return asyncio.create_task(serve())

    @property
    def headers(self) -> dict[bytes, bytes]:
        return {name.lower(): value for name, value in self.sent[0]["headers"]}


async def finished(task: asyncio.Task, timeout: float = 5):
    """The handler task's result once it has ended by itself (``wait_for`` would cancel it
    on timeout: as a client leaving does, which would hide a handler that missed the
    disconnect)."""
    await asyncio.wait([task], timeout=timeout)
    assert task.done(), f"the handler still runs after {timeout} s"
    return task.result()


def serve_once(server: Server | None = None) -> Server:
    server = server or Server()

    async def main():
        assert await finished(server.start()) == 0

    asyncio.run(main())
    return server


def test_it_cancels_the_view_when_the_client_leaves(monkeypatch):
    started, cancelled = asyncio.Event(), []

    async def view(request):
        started.set()
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    monkeypatch.setitem(handler._views(), PATH, view)
    server = Server()

    async def main():
        task = server.start()
        await started.wait()
        server.gone.set()  # the client leaves
        return await finished(task)

    assert asyncio.run(main()) == 0  # the handler returns, its task not left cancelling
    assert cancelled == [True]
    assert server.sent == []


def test_it_cancels_a_stream_when_the_client_leaves_mid_stream(monkeypatch):
    ended = []

    async def events():
        try:
            yield b"data: 1\n\n"
            await asyncio.Event().wait()  # until cancelled
            yield b"data: 2\n\n"
        except asyncio.CancelledError:
            ended.append("cancelled")  # the relay settles and closes the backend here
            raise

    async def view(request):
        return StreamingHttpResponse(events(), content_type="text/event-stream")

    class LeavingServer(Server):
        async def send(self, message):
            await super().send(message)
            if message.get("body"):
                self.gone.set()  # leaves after the first event

    monkeypatch.setitem(handler._views(), PATH, view)
    server = serve_once(LeavingServer())
    assert ended == ["cancelled"]
    assert [m.get("body") for m in server.sent[1:]] == [b"data: 1\n\n"]


def test_it_does_not_swallow_a_cancellation_from_the_server(monkeypatch):
    started = asyncio.Event()

    async def view(request):
        started.set()
        await asyncio.Event().wait()  # until cancelled

    monkeypatch.setitem(handler._views(), PATH, view)

    async def main():
        task = Server().start()
        await started.wait()
        task.cancel()  # uvicorn shutting down, the client still there
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_it_sends_the_view_s_headers_with_the_security_headers_and_a_length(monkeypatch):
    async def view(request):
        answer = HttpResponse(b'{"ok": true}', content_type="application/json")
        answer["X-Anvil-Credits-Charged"] = "0.5"
        answer["X-Frame-Options"] = "SAMEORIGIN"  # a view's own value is kept
        return answer

    monkeypatch.setitem(handler._views(), PATH, view)
    server = serve_once()
    assert server.sent[0]["status"] == 200
    assert server.headers == {
        b"content-type": b"application/json",
        b"x-anvil-credits-charged": b"0.5",
        b"x-frame-options": b"SAMEORIGIN",
        b"x-content-type-options": b"nosniff",
        b"referrer-policy": b"same-origin",
        b"content-length": b"12",
    }
    assert server.sent[1] == {"type": "http.response.body", "body": b'{"ok": true}'}


def test_it_answers_a_failing_view_with_django_s_500_and_logs_it(monkeypatch, caplog):
    async def view(request):
        raise RuntimeError("boom")

    monkeypatch.setitem(handler._views(), PATH, view)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        server = serve_once()
    assert server.sent[0]["status"] == 500
    assert server.headers[b"x-content-type-options"] == b"nosniff"
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info[1].args == ("boom",)
    assert record.request.path == PATH


def test_it_logs_an_error_answer_as_django_does(monkeypatch, caplog):
    async def view(request):
        return HttpResponse(status=401)

    monkeypatch.setitem(handler._views(), PATH, view)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        serve_once()
    assert [r.getMessage() for r in caplog.records] == [f"Unauthorized: {PATH}"]


def test_it_answers_a_query_string_that_is_not_utf8_with_400():
    server = serve_once(Server({"query_string": b"model=\xff"}))
    assert server.sent[0]["status"] == 400


def test_closing_a_relayed_stream_closes_the_backend_side_at_once():
    """When the client goes, the handler closes the stream it sends; the relay behind it (which
    closes the backend stream and settles) is closed within that close, which a graceful
    shutdown waits for, not later by the event loop's finaliser."""
    import asyncio

    from apps.gateway.relay import chain

    closed = []

    async def relayed():
        try:
            yield "a"
            yield "b"
        finally:
            closed.append("settled")

    async def scenario():
        stream = chain("first", relayed())
        assert [await anext(stream), await anext(stream)] == ["first", "a"]
        await stream.aclose()
        return list(closed)

    assert asyncio.run(scenario()) == ["settled"]


def test_every_gateway_url_is_served_by_the_lean_handler():
    """A new gateway endpoint left out of GATEWAY_PATHS still works, through Django's handler
    and its middleware: slower, and outside the gateway's access log and metrics."""
    from django.urls import get_resolver, reverse

    from apps.gateway.urls import urlpatterns

    names = [p.name for p in urlpatterns if p.name != "model"]  # model: MODEL_PREFIX
    get_resolver()  # the URLconf is loaded
    assert {reverse(f"gateway:{name}") for name in names} == handler.GATEWAY_PATHS
