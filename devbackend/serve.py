"""Serve one generated reply with its plan's latency, pacing and faults."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from devbackend import asgi, wire
from devbackend.asgi import DroppedConnection, Send
from devbackend.plan import Plan
from devbackend.replies import Reply


class Pacer:
    """Token i (from 1) is ready i / tokens-per-second after the pacer starts.

    Unpaced, it still yields to the event loop every few tokens, so one long stream cannot
    hold up the others (or the noticing of a client that went away).
    """

    def __init__(self, tps: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.interval = 1 / tps if tps else 0.0
        self.start = self.loop.time()

    async def until(self, i: int) -> None:
        if self.interval:
            delay = self.start + i * self.interval - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        elif i % 32 == 0:
            await asyncio.sleep(0)


async def _forever() -> None:
    await asyncio.Event().wait()


async def _first_byte(send: Send, plan: Plan) -> bool:
    """Wait the plan's latency; answer an error fault. False if the request is done."""
    if plan.latency_ms:
        await asyncio.sleep(plan.latency_ms / 1000)
    if plan.fault is not None and plan.fault.kind == "error":
        await asgi.send_error(send, wire.error_for_status(plan.fault.status))
        return False
    return True


async def serve_whole(send: Send, plan: Plan, *, tokens: int, body: Callable[[], Any]) -> None:
    """A JSON response, sent once its last token is ready."""
    if not await _first_byte(send, plan):
        return
    pacer = Pacer(plan.tps)
    stall, drop = plan.cut_after("stall"), plan.cut_after("drop")
    if stall is not None:
        await pacer.until(min(stall, tokens))
        await _forever()
    encoded = wire.encode(body())
    await pacer.until(tokens if drop is None else min(drop, tokens))
    if drop is not None:
        length = (b"content-length", str(len(encoded)).encode())
        headers = [*asgi.JSON_HEADERS, length]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise DroppedConnection
    await asgi.send_bytes(send, status=200, body=encoded)


async def serve_reply(send: Send, reply: Reply, plan: Plan) -> None:
    if reply.stream:
        await serve_stream(send, reply, plan)
    else:
        body = functools.partial(reply.body, with_usage=plan.reports_usage)
        await serve_whole(send, plan, tokens=len(reply.pieces), body=body)


async def serve_stream(send: Send, reply: Reply, plan: Plan) -> None:
    if not await _first_byte(send, plan):
        return
    parts = reply.stream_parts(with_usage=plan.reports_usage)
    await asgi.sse_start(send)
    if parts.head:
        await asgi.sse_send(send, parts.head)
    pacer = Pacer(plan.tps)
    stall, drop = plan.cut_after("stall"), plan.cut_after("drop")
    cut = next((n for n in (stall, drop) if n is not None), None)
    pieces = reply.pieces if cut is None else reply.pieces[:cut]
    for i, piece in enumerate(pieces, start=1):
        await pacer.until(i)
        await asgi.sse_send(send, parts.template.render(piece))
    if drop is not None:
        raise DroppedConnection
    if stall is not None:
        await _forever()
    await asgi.sse_send(send, parts.tail, last=True)
