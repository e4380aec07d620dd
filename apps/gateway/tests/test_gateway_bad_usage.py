"""A backend that reports usage no ledger row can hold (negative, true/false, beyond the
ledger's integer columns): the request is billed as one without usage (estimated), its
answer and its ledger row agree, and no hold is left behind."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from apps.usage.models import Hold, LedgerEntry, Outcome
from tests.world import wait_for_settlements

pytestmark = pytest.mark.django_db(transaction=True)


def answer_with(usage: dict, *, stream: bool) -> bytes:
    head = {"id": "x", "model": "chat-small", "created": 0}
    if not stream:
        message = {"role": "assistant", "content": "Hi there"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return json.dumps(
            {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        ).encode()
    chunks = [
        {**head, "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {
            **head,
            "choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}],
        },
        {**head, "choices": [], "usage": usage},
    ]
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
    return "".join(events).encode()


@pytest.fixture
def lying_backend(gateway):
    """A backend whose answers carry ``backend.usage``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            stream = bool(body.get("stream"))
            content = answer_with(server.usage, stream=stream)
            self.send_response(200)
            kind = "text/event-stream" if stream else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.usage = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    gateway.world.backend.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    gateway.world.backend.save()
    yield server
    server.shutdown()
    server.server_close()


BAD_USAGE = [
    {"prompt_tokens": -5, "completion_tokens": 2, "total_tokens": -3},
    {"prompt_tokens": 5, "completion_tokens": -2, "total_tokens": 3},
    {"prompt_tokens": True, "completion_tokens": 2, "total_tokens": 3},
    {"prompt_tokens": 2**40, "completion_tokens": 2, "total_tokens": 2**40 + 2},
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("usage", BAD_USAGE)
def test_usage_no_ledger_row_can_hold_is_billed_as_estimated(gateway, lying_backend, usage, stream):
    lying_backend.usage = usage
    answer = httpx.post(
        f"{gateway.url}/chat/completions",
        headers={"authorization": f"Bearer {gateway.secret}"},
        json={"model": "chat-small", "messages": [{"role": "user", "content": "Hi"}],
              "max_tokens": 8, "stream": stream},
        timeout=10,
    )  # fmt: skip

    assert answer.status_code == 200
    wait_for_settlements()
    assert not Hold.objects.exists()
    entry = LedgerEntry.objects.get()
    assert (entry.outcome, entry.estimated) == (Outcome.OK, True)
    assert entry.completion_tokens == 2
    if stream:
        comment = next(line for line in answer.text.splitlines() if line.startswith(": anvil "))
        charged = json.loads(comment.removeprefix(": anvil "))["credits_charged"]
    else:
        charged = answer.headers["x-anvil-credits-charged"]
    assert Decimal(charged) == entry.credits > 0
