"""Where Anvil's CPU time goes: a summary of py-spy's raw stacks (``--profile FILE``).

Each sample is charged three times: to the gateway *step* it belongs to (key authentication,
credit hold, backend call, settle, Django middleware, …), to the innermost *layer* it was in
(the database driver, the Redis client, httpx, Django, JSON, …) and to the innermost Anvil
function on its stack, so "the hold spends its time in psycopg" can be read off.

    python -m bench.profile FILE [REQUESTS]   # the summary of a file recorded earlier
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

from bench.servers import RATE

# (name, substrings of a frame's "function (file:line)"); the innermost matching frame wins.
LAYERS = [
    ("PostgreSQL driver (psycopg)", ("psycopg",)),
    ("Django ORM / db", ("django/db/",)),
    ("Redis client", ("redis/", "(lib/resp.py")),
    ("httpx/httpcore (backend call)", ("httpx/", "httpcore/", "h11/", "anyio/")),
    ("JSON", ("json/",)),
    ("logging", ("logging/",)),
    ("importlib (metadata lookups)", ("importlib",)),
    ("asgiref sync_to_async / threads", ("asgiref/", "concurrent/futures", "threading.py")),
    ("Django request handling", ("django/",)),
    ("uvicorn / HTTP parsing", ("uvicorn/", "httptools")),
    ("backend client (lib/backend_http)", ("(lib/backend_http.py",)),
    ("Anvil code", ("(apps/", "(lib/")),
    ("asyncio / event loop", ("asyncio/", "uvloop")),
]
STEPS = [
    ("key authentication (api_key_authenticate)", ("api_key_authenticate (",)),
    ("credit hold (ledger.aplace)", ("place (apps/usage/",)),
    (
        "settle (ledger.asettle, its batch)",
        ("settle (apps/usage/", "_settle_all (apps/usage/", "write (apps/usage/pg.py"),
    ),
    ("credit headers (budget_status)", ("budget_status (",)),
    ("catalog snapshot (current_catalog)", ("current_catalog (",)),
    ("concurrency slot (lib/slots_redis)", ("(lib/slots", "(apps/gateway/slots")),
    ("backend call (relay._open)", ("_open (apps/gateway/relay.py",)),
    ("stream relay (relay._events)", ("_events (apps/gateway/relay.py",)),
    ("other gateway view code", ("(apps/gateway/",)),
]
# Samples in none of the gateway's steps: the framework around them.
FRAMEWORK = [
    ("Django middleware", ("MiddlewareMixin", "middleware")),
    ("Django request/response handling", ("django/",)),
    ("thread-pool hops (asgiref)", ("asgiref/", "concurrent/futures", "threading.py")),
    ("uvicorn / HTTP parsing", ("uvicorn/", "httptools")),
    ("event loop (asyncio/uvloop)", ("asyncio/", "uvloop")),
]
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _innermost(frames: list[str], names: list[tuple[str, tuple[str, ...]]]) -> str:
    for frame in reversed(frames):
        for name, needles in names:
            if any(needle in frame for needle in needles):
                return name
    return "other"


MIDDLEWARE = "Django sync middleware (a thread hop each: sessions, CSRF, auth, messages…)"


def _in_sync_middleware(frames: list[str]) -> bool:
    """Django runs each sync-only middleware through sync_to_async under ASGI (and a fresh
    thread per request for them): the hop, the middleware's own work, that thread."""
    if any("ThreadSensitiveContext" in frame for frame in frames):
        return True
    for i in range(len(frames) - 1, -1, -1):
        if "MiddlewareMixin.__acall__" in frames[i]:
            below = frames[i + 1] if i + 1 < len(frames) else ""
            return "convert_exception_to_response" not in below  # not the next layer's call
        if "run_child (asgiref/" in frames[i]:  # a worker thread: what does it run?
            below = frames[i + 1] if i + 1 < len(frames) else ""
            return "middleware" in below
    return False


def _step(frames: list[str]) -> str:
    step = _innermost(frames, STEPS)
    if step != "other":
        return step
    return MIDDLEWARE if _in_sync_middleware(frames) else _innermost(frames, FRAMEWORK)


def _anvil_function(frames: list[str]) -> str:
    for frame in reversed(frames):
        match = FRAME.match(frame)
        if match and match["file"].startswith(("apps/", "lib/")):  # py-spy: paths from sys.path
            module = match["file"].removesuffix(".py").replace("/", ".")
            return f"{module}.{match['function']}"
    return "(outside Anvil's code: server, Django, event loop)"


def samples(path: Path) -> list[tuple[list[str], int]]:
    result = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            result.append((stack.split(";"), int(count)))
    return result


def summary(path: Path, *, requests: int = 0, top: int = 14) -> str:
    """Shares of the samples; with ``requests`` (served while recording) also CPU ms each."""
    rows = samples(path)
    total = sum(count for _, count in rows) or 1
    tables = {
        "by gateway step": Counter(),
        "by layer (innermost library)": Counter(),
        "by innermost Anvil function": Counter(),
    }
    by_step, by_layer, by_function = tables.values()
    for frames, count in rows:
        by_step[_step(frames)] += count
        by_layer[_innermost(frames, LAYERS)] += count
        by_function[_anvil_function(frames)] += count
    ms = 1000 / RATE / requests if requests else 0.0
    lines = [
        f"Anvil CPU profile: {total} samples of the thread holding the GIL (py-spy --gil, "
        f"{RATE}/s) over {requests or 'an unknown number of'} requests"
        + (f": {total * ms:.2f} ms each" if ms else "")
    ]
    for title, counter in tables.items():
        lines.append(f"{title}:")
        for name, n in counter.most_common(top):
            cost = f"{n * ms:6.2f} ms " if ms else ""
            lines.append(f"  {100 * n / total:5.1f}%  {cost} {name}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]), requests=int(sys.argv[2]) if len(sys.argv) > 2 else 0))
