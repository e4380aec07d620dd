"""The ASGI application: routing, API key check, stats and the endpoints."""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass
from typing import Any

from devbackend import asgi, parse, responses, serve, text
from devbackend.asgi import Receive, Send
from devbackend.embeddings import embeddings_body
from devbackend.plan import Plan, plan_build
from devbackend.stats import Stats
from devbackend.wire import ApiError

DEFAULT_MODELS = ("chat-small", "chat-large", "embed-small")
Scope = dict[str, Any]


@dataclass(frozen=True)
class Options:
    models: tuple[str, ...] = DEFAULT_MODELS
    latency_ms: float = 0.0
    tokens_per_second: float = 0.0  # 0 = unlimited
    api_key: str | None = None
    context_tokens: int = text.DEFAULT_CONTEXT_TOKENS  # prompt and reply together


class DevBackend:
    """``DevBackend(Options(...))`` is an ASGI 3 application."""

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self.defaults = Plan(latency_ms=self.options.latency_ms, tps=self.options.tokens_per_second)
        self.stats = Stats()
        self.created = int(time.time())
        self.routes = {
            ("GET", "/health"): self.health,
            ("GET", "/dev/stats"): self.stats_show,
            ("POST", "/dev/stats/reset"): self.stats_reset,
            ("GET", "/v1/models"): self.models_list,
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("POST", "/v1/completions"): self.completions,
            ("POST", "/v1/embeddings"): self.embeddings,
            ("POST", "/v1/responses"): self.responses,
            ("POST", "/tokenize"): self.tokenize,
        }
        asgi.quiet_dropped_connections()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            handler = self._route(scope)
            await handler(scope, receive, send)
        except ApiError as error:
            await asgi.send_error(send, error)
        except asgi.ClientGone:
            return

    def _route(self, scope: Scope):
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        if path.startswith("/v1/") or path == "/tokenize":
            self._authorize(scope)
        if method == "GET" and path.startswith("/v1/models/"):
            return self.models_retrieve
        handler = self.routes.get((method, path))
        if handler is None:
            if any(route_path == path for _, route_path in self.routes):
                raise ApiError(f"Method {method} not allowed on {path}.", status=405)
            raise ApiError(f"Unknown URL {path}.", status=404, code="unknown_url")
        return handler

    def _authorize(self, scope: Scope) -> None:
        if self.options.api_key is None:
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        expected = b"Bearer " + self.options.api_key.encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError("Incorrect API key provided.", status=401, code="invalid_api_key")

    async def health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await asgi.send_json(send, {"status": "ok"})

    async def stats_show(self, scope: Scope, receive: Receive, send: Send) -> None:
        await asgi.send_json(send, self.stats.as_dict())

    async def stats_reset(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.stats.reset()
        await asgi.send_json(send, self.stats.as_dict())

    def _model(self, model_id: str) -> dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "created": self.created,
            "owned_by": "anvil-devbackend",
        }

    async def models_list(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = [self._model(name) for name in self.options.models]
        await asgi.send_json(send, {"object": "list", "data": data})

    async def models_retrieve(self, scope: Scope, receive: Receive, send: Send) -> None:
        await asgi.send_json(send, self._model(scope["path"].rstrip("/")[len("/v1/models/") :]))

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = parse.json_object(await asgi.read_body(receive))
        reply = parse.chat_reply(body, context_tokens=self.options.context_tokens)
        plan = self._plan(scope, reply.head["model"])
        await self._run(receive, serve.serve_reply(send, reply, plan))

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = parse.json_object(await asgi.read_body(receive))
        reply = parse.completion_reply(body, context_tokens=self.options.context_tokens)
        plan = self._plan(scope, reply.head["model"])
        await self._run(receive, serve.serve_reply(send, reply, plan))

    async def responses(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = parse.json_object(await asgi.read_body(receive))
        chat = parse.chat_reply(
            responses.chat_body(body), context_tokens=self.options.context_tokens
        )
        reply = responses.ResponsesReply(chat)
        plan = self._plan(scope, reply.head["model"])
        await self._run(receive, serve.serve_reply(send, reply, plan))

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = parse.json_object(await asgi.read_body(receive))
        model, inputs, dimensions, encoding = parse.embedding_request(body)
        plan = self._plan(scope, model)

        def render() -> dict[str, Any]:
            return embeddings_body(
                model=model,
                inputs=inputs,
                dimensions=dimensions,
                encoding="float" if plan.floats_only else encoding,
                with_usage=plan.reports_usage,
            )

        await self._run(receive, serve.serve_whole(send, plan, tokens=0, body=render))

    async def tokenize(self, scope: Scope, receive: Receive, send: Send) -> None:
        """vLLM's ``POST /tokenize``: the prompt tokens of ``messages`` (or of ``prompt``),
        counted as the chat and completion endpoints count them."""
        body = parse.json_object(await asgi.read_body(receive))
        parse.model_of(body)
        if "messages" in body:
            count = text.chat_prompt_tokens(parse.messages_of(body))
        else:
            count = text.prompt_tokens(parse.prompt_of(body))
        tokens = [0] * count  # this backend has no vocabulary: every token is 0
        await asgi.send_json(
            send, {"count": count, "max_model_len": self.options.context_tokens, "tokens": tokens}
        )

    def _plan(self, scope: Scope, model: str) -> Plan:
        return plan_build(defaults=self.defaults, model=model, headers=dict(scope["headers"]))

    async def _run(self, receive: Receive, work) -> None:
        self.stats.begin()

        async def counted() -> None:
            # Ended in the step that sent the last byte. Ended once this request's task resumed
            # after the work, the count overlapped the next request of a kept-alive connection:
            # a client never having more than 2 requests out was counted up to 4 in flight.
            cancelled = False
            try:
                await work
            except asyncio.CancelledError:
                cancelled = True  # the client went away first
                raise
            finally:
                self.stats.end(cancelled=cancelled)

        await asgi.run_until_disconnect(receive, counted())


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
