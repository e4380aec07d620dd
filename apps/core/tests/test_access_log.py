"""Anvil's access log: a line for every portal request and every gateway answer that is not
2xx (a successful gateway request is in the ledger), in uvicorn's format."""

from __future__ import annotations

import asyncio
import logging

import pytest
from django.http import HttpResponse

from apps.core.access_log import log_access
from apps.gateway import handler
from portal.asgi import application


def serve(method: str, path: str, query_string: bytes = b"", headers=()) -> list[dict]:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "root_path": "",
        "query_string": query_string,
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "server": ("127.0.0.1", 8000),
        "client": ("10.0.0.7", 50123),
    }
    sent, done, body = [], asyncio.Event(), [b'{"messages": "secret prompt"}']

    async def receive():
        if body:
            return {"type": "http.request", "body": body.pop()}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    asyncio.run(application(scope, receive, send))
    return sent


@pytest.fixture
def access(caplog):
    caplog.set_level(logging.INFO, logger="anvil.access")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "anvil.access"]


def test_it_logs_a_portal_request(access, db):
    sent = serve("GET", "/no-such-page/", b"q=1")
    assert sent[0]["status"] == 404
    assert access() == ['10.0.0.7:50123 - "GET /no-such-page/?q=1 HTTP/1.1" 404']


def test_it_logs_a_refused_gateway_request_without_its_body(access):
    sent = serve("POST", "/api/v1/chat/completions", headers=[(b"authorization", b"Basic x")])
    assert sent[0]["status"] == 401
    assert access() == ['10.0.0.7:50123 - "POST /api/v1/chat/completions HTTP/1.1" 401']


def test_it_leaves_a_successful_gateway_request_to_the_ledger(access, monkeypatch):
    async def view(request):
        return HttpResponse(b"{}", content_type="application/json")

    monkeypatch.setitem(handler._views(), "/api/v1/chat/completions", view)
    sent = serve("POST", "/api/v1/chat/completions")
    assert sent[0]["status"] == 200
    assert access() == []


def test_it_keeps_a_request_from_writing_lines_of_its_own(access):
    scope = {
        "method": "GET",
        "path": "/a b\n10.0.0.1 - fake",
        "query_string": b"x=1\r\nfake line",
        "client": None,
    }
    log_access(scope, 404)
    (line,) = access()
    assert "\n" not in line and "\r" not in line
    assert line == ' - "GET /a%20b%0A10.0.0.1%20-%20fake?x=1%0D%0Afake%20line HTTP/1.1" 404'
