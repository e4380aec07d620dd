"""An ASGI wrapper that refuses a request body over a limit with 413 before reading it all.

``BodyLimit(app, limit=…, too_large=…)``: ``limit(scope)`` is the largest body in bytes the
request may have (None: no limit). A request whose Content-Length is over it is answered 413
without calling the application, so nothing of its body is read. A body without a length
(chunked) is passed on as it comes, counted: once it goes over the limit the client gets 413
(if the application has not answered yet), the application is told the client left
(``http.disconnect``: Django's handler then stops reading and drops what it stored) and
anything it still sends is dropped. Either way the answer says ``Connection: close``, so the
server closes the connection instead of reading what is left of the body.

``too_large(scope, limit)`` gives the 413's (content type, body); by default ``plain_too_large``,
a line of text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
App = Callable[[dict, Receive, Send], Awaitable[None]]


def declared_length(scope: dict) -> int | None:
    """The request's Content-Length, or None when it has none (or not a number)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def plain_too_large(scope: dict, limit: int) -> tuple[bytes, bytes]:
    return b"text/plain; charset=utf-8", b"Request body too large (at most %d bytes).\n" % limit


class BodyLimit:
    def __init__(
        self,
        app: App,
        *,
        limit: Callable[[dict], int | None],
        too_large: Callable[[dict, int], tuple[bytes, bytes]] = plain_too_large,
    ) -> None:
        self.app = app
        self.limit = limit
        self.too_large = too_large

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        if limit is None:
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > limit:
            await self._refuse(scope, send, limit)
            return
        state = {"size": 0, "refused": False, "started": False}

        async def counted_receive() -> dict:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["size"] += len(message.get("body", b""))
                if state["size"] > limit:
                    state["refused"] = True
                    if not state["started"]:
                        await self._refuse(scope, send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if state["refused"]:
                return  # the client has its 413
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _refuse(self, scope: dict, send: Send, limit: int) -> None:
        content_type, body = self.too_large(scope, limit)
        headers = [
            (b"content-type", content_type),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
