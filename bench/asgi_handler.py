"""The gateway's lean ASGI handler (apps.gateway.handler) against Django's own ASGIHandler.

    DATABASE_URL=… SECRET_KEY=… API_KEY_PEPPER=… .venv/bin/python -m bench.asgi_handler

In this process, on uvloop, with a fake ASGI server (``receive`` gives the body in one
message, ``send`` keeps the messages): a stub view at /api/v1/chat/completions that does what
the gateway's views do with a request (method, Authorization header, JSON body) and answers
like a non-streaming relay (JSON, three headers), served by

- ``django``: Django's ASGIHandler with the portal's middleware (what the gateway's URLs
  had before the lean handler);
- ``django-bare``: Django's ASGIHandler with no middleware (its request object, URL resolver,
  request_started/finished signals and thread-sensitive context remain);
- ``anvil``: apps.gateway.handler.GatewayHandler.

Prints the CPU time (this process, all threads) and the wall p50 per request, sequentially,
the median (min-max) of ``--rounds`` rounds, the handlers alternating. No database query is
made (the signals' close_old_connections only looks at the thread's connections).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import django
import uvloop

PATH = "/api/v1/chat/completions"
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": PATH,
    "raw_path": PATH.encode(),
    "root_path": "",
    "query_string": b"",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer sk-anvil-bench-0123456789"),
        (b"content-length", str(len(BODY)).encode()),
    ],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


def _stub_view():
    from django.http import HttpResponse
    from django.views.decorators.csrf import csrf_exempt

    @csrf_exempt
    async def chat_completions(request):
        assert request.method == "POST"
        request.headers.get("Authorization")
        json.loads(request.read())
        answer = HttpResponse(b'{"id": "x", "choices": []}', content_type="application/json")
        answer["X-Anvil-Credits-Remaining"] = "1000"
        answer["X-Anvil-Limited-By"] = "grant"
        return answer

    return chat_completions


def urls():
    from django.urls import path

    return [path(PATH.lstrip("/"), _stub_view())]


urlpatterns: list = []  # filled by main(): this module is the URLconf


async def one_request(handler) -> int:
    sent = []
    given = False

    async def receive():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.Event().wait()  # no disconnect

    async def send(message):
        sent.append(message)

    await handler(dict(SCOPE), receive, send)
    return sent[0]["status"]


async def one_round(handler, count: int) -> tuple[float, float]:
    """CPU ms per request (the process: every thread), wall p50 ms."""
    walls = []
    cpu = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        assert await one_request(handler) == 200
        walls.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu
    return cpu / count * 1000, statistics.median(walls) * 1000


def handlers() -> dict[str, object]:
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.exception import convert_exception_to_response

    from apps.gateway.handler import GatewayHandler

    class BareHandler(ASGIHandler):
        def load_middleware(self, is_async: bool = False) -> None:
            self._view_middleware, self._template_response_middleware = [], []
            self._exception_middleware = []
            self._middleware_chain = convert_exception_to_response(self._get_response_async)

    return {"django": ASGIHandler(), "django-bare": BareHandler(), "anvil": GatewayHandler()}


async def run(count: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    made = handlers()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in made}
    for handler in made.values():
        await one_round(handler, count // 10)  # warm-up
    for _ in range(rounds):
        for name, handler in made.items():
            results[name].append(await one_round(handler, count))
    return results


def _cell(figures: list[float]) -> str:
    return f"{statistics.median(figures):.3f} ({min(figures):.2f}-{max(figures):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from django.conf import settings

    global urlpatterns
    urlpatterns = urls()
    settings.ROOT_URLCONF = __name__
    results = uvloop.run(run(args.requests, args.rounds))
    print(
        f"ms per request, median (min-max) of {args.rounds} rounds of {args.requests}, "
        "sequential; uvloop; a stub view; CPU of this process (all threads)"
    )
    print(f"{'':16}{'CPU ms/request':>22}{'wall p50 ms':>22}")
    for name, figures in results.items():
        cpu, wall = _cell([f[0] for f in figures]), _cell([f[1] for f in figures])
        print(f"{name:16}{cpu:>22}{wall:>22}")


if __name__ == "__main__":
    main()
