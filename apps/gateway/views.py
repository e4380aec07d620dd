"""The OpenAI-compatible endpoints: plain async views (DRF would buffer streams).

Each inference request reads top to bottom in ``serve``: parse the body (``parse``), admit it
(``admission.admitted``: key, checks, credit hold, the model's slot), relay it (``relay``),
answer. The admission owns the hold and the slot and ends them on every exit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from apps.core.logs import note_model
from apps.gateway import parsing, relay, responses, tokens
from apps.gateway.admission import Ask, aauthenticate, admitted, akey, unknown_model
from apps.gateway.catalog import current_catalog
from apps.gateway.errors import GatewayError
from apps.gateway.slots import QueueFull, slot_stats
from apps.keys.auth import bearer_secret


def upstream_body(body: dict, admission, *, stream: bool) -> dict:
    """The body the backend gets: the client's, for the admitted model, with the completion
    limit the hold covers — always, so no backend generates more than was held: the client's
    own limit, lowered when its budget affords less, or, when it sent none, the rest of the
    context window (or what the budget affords). vLLM's ``min_tokens`` above it is lowered
    to it (a backend would otherwise generate past the hold)."""
    upstream = dict(body)
    upstream["model"] = admission.model.upstream_model
    if "stream" in body:
        upstream["stream"] = stream  # the older quick-start sends the string 'false'
    limit = admission.max_tokens
    if limit is not None:
        # every limit the client sent says what was admitted (a backend may read either)
        fields = [f for f in ("max_completion_tokens", "max_tokens") if body.get(f) is not None]
        for field in fields or ["max_tokens"]:
            upstream[field] = limit
        least = body.get("min_tokens")
        if type(least) is int and least > limit:
            upstream["min_tokens"] = limit
    if stream:
        options = body.get("stream_options")
        upstream["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return upstream


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str  # on the backend
    validate: Callable[[dict], None]
    prompt_size: Callable[[dict], tokens.PromptSize]
    streams: bool = True
    upstream: Callable[..., dict] = upstream_body


CHAT = Endpoint("chat", "/chat/completions", parsing.require_messages, tokens.chat_prompt_size)
COMPLETIONS = Endpoint(
    "completions", "/completions", parsing.require_prompt, tokens.completion_prompt_size
)
EMBEDDINGS = Endpoint(
    "embeddings", "/embeddings", parsing.require_input, tokens.embedding_input_size, streams=False
)
# A Responses request, served as the chat request it translates to (responses.chat_request)…
RESPONSES = Endpoint(
    "responses", "/chat/completions", parsing.require_messages, tokens.chat_prompt_size
)
# …or passed as it came to a backend that serves the Responses API itself.
NATIVE_RESPONSES = Endpoint(
    "responses", "/responses", lambda body: None, responses.native_prompt_size,
    upstream=responses.native_upstream,
)  # fmt: skip


# The older quick-start posts a chat body to /completions; it is served as a chat completion.
CHAT_AT_COMPLETIONS = Endpoint(
    "completions", CHAT.path, parsing.require_messages, tokens.chat_prompt_size
)


@dataclass(frozen=True)
class Parsed:
    endpoint: Endpoint
    body: dict
    model_name: str
    stream: bool
    wants_usage: bool  # stream_options.include_usage
    max_tokens: int | None
    prompt: tokens.PromptSize
    choices: int  # completions the backend generates: n (best_of) for each prompt
    request: dict | None = None  # a Responses request: as the client sent it


def parse(request, endpoint: Endpoint) -> Parsed:
    """Everything Anvil reads from the body, checked; GatewayError (400, 413) for a bad one and
    no other exception: the credit hold and the model's slot are taken after this."""
    body = parsing.read_json_body(request)
    if endpoint is COMPLETIONS and "messages" in body and "prompt" not in body:
        endpoint = CHAT_AT_COMPLETIONS
    model_name = parsing.require_model(body)
    endpoint.validate(body)
    stream = endpoint.streams and parsing.require_stream_flag(body)
    wants_usage = endpoint.streams and parsing.stream_wants_usage(body)
    max_tokens = parsing.optional_max_tokens(body)
    choices = parsing.choices(body) if endpoint.streams else 1  # not for embeddings
    prompt = endpoint.prompt_size(body)
    if endpoint is COMPLETIONS:
        choices *= prompt.messages  # a list of prompts: n completions of each
    return Parsed(endpoint, body, model_name, stream, wants_usage, max_tokens, prompt, choices)


def parse_responses(request, catalog) -> Parsed:
    """A Responses request: passed on as it came when its model's backend serves the Responses
    API (``responses: native`` in the catalog), else as the chat request it translates to."""
    body = parsing.read_json_body(request)
    model_name = parsing.require_model(body)
    model = catalog.models.get(model_name)
    native = model is not None and model.native_responses
    responses.check_request(body, native=native)
    stream = parsing.require_stream_flag(body)
    max_tokens = body.get("max_output_tokens")
    if native:
        prompt = responses.native_prompt_size(body)
        return Parsed(
            NATIVE_RESPONSES, body, model_name, stream, False, max_tokens, prompt, 1, body
        )
    chat = responses.chat_request(body)
    prompt = tokens.chat_prompt_size(chat)
    # a chat stream with usage: the translation reads it for response.completed
    return Parsed(RESPONSES, chat, model_name, stream, True, max_tokens, prompt, 1, body)


def _secret(request) -> str | None:
    return bearer_secret(request.headers.get("authorization"))


async def serve(request, endpoint: Endpoint, key_id: int | None = None) -> HttpResponse:
    """One inference request, top to bottom: parse, admit, relay, answer. The key is the
    bearer secret's, or the key ``key_id`` (the playground: a signed-in person's own key,
    judged as if its secret had been sent)."""
    secret = None if key_id is not None else _secret(request)
    try:
        try:
            if endpoint is RESPONSES:  # native or translated: the model's backend decides
                parsed = parse_responses(request, await current_catalog())
            else:
                parsed = parse(request, endpoint)
            note_model(parsed.model_name)  # for the request's log lines (apps.core.logs)
        except GatewayError:
            # an unknown key hears 401 whatever its body says
            await (aauthenticate(secret) if key_id is None else akey(key_id))
            raise
        ask = Ask(
            secret=secret, endpoint=parsed.endpoint.name, model_name=parsed.model_name,
            prompt=parsed.prompt, max_tokens=parsed.max_tokens, choices=parsed.choices,
            key_id=key_id,
        )  # fmt: skip
        admitting = admitted(ask, await current_catalog())
        if parsed.stream:
            return await _answer_stream(admitting, parsed)
        async with admitting as admission:
            upstream = parsed.endpoint.upstream(parsed.body, admission, stream=False)
            payload = await relay.forward(admission, parsed.endpoint.path, upstream)
        if parsed.endpoint is EMBEDDINGS and parsed.body.get("encoding_format") == "base64":
            relay.embeddings_as_base64(payload)
        estimated = admission.estimated_usage()
        if estimated is not None:  # the backend reported no usage: what Anvil charged for
            payload["usage"] = estimated
        if parsed.endpoint is RESPONSES:
            payload = responses.response_from_chat(payload, parsed.request, parsed.model_name)
        elif parsed.endpoint is NATIVE_RESPONSES and estimated is not None:
            payload["usage"] = responses.usage_of(estimated)
        answer = JsonResponse(payload)
        for name, value in admission.headers().items():
            answer[name] = value
        return answer
    except QueueFull as exc:  # full, waited too long, or the queue store unreachable
        return GatewayError(
            503,
            f"{exc.message} Retry in {exc.retry_after} s.",
            code=exc.code,
            headers={"Retry-After": str(exc.retry_after)},
        ).response()
    except GatewayError as exc:
        return exc.response()


async def _answer_stream(admitting: admitted, parsed: Parsed) -> HttpResponse:
    """The stream's first event is awaited before answering, so a refusal or a backend that
    fails before its first token still gets its status. A started stream dropped unfinished
    (the client left before Django began sending) is closed by the event loop's finaliser,
    which ends its admission."""
    events = relay.stream(
        admitting,
        parsed.endpoint.path,
        lambda admission: parsed.endpoint.upstream(parsed.body, admission, stream=True),
        parsed.wants_usage,
    )
    first = await anext(events)
    body = relay.chain(first, events)
    if parsed.endpoint is RESPONSES:
        body = responses.response_events(parsed.request, parsed.model_name, body)
    answer = StreamingHttpResponse(body, content_type="text/event-stream")
    answer["Cache-Control"] = "no-cache"
    answer["X-Accel-Buffering"] = "no"
    admission = admitting.admission
    if admission.lowered:
        answer["X-Anvil-Max-Tokens-Lowered"] = str(admission.max_tokens)
    return answer


def allow_only(method: str):
    """Like Django's require_POST/require_GET, but the 405 in OpenAI's error shape (clients
    read every gateway error there), with the Allow header."""

    def decorate(view):
        @wraps(view)
        async def checked(request, *args, **kwargs):
            if request.method != method:
                return GatewayError(
                    405,
                    f"This endpoint takes {method} requests, not {request.method}.",
                    code="method_not_allowed",
                    headers={"Allow": method},
                ).response()
            return await view(request, *args, **kwargs)

        return checked

    return decorate


@csrf_exempt
@allow_only("POST")
async def chat_completions(request):
    return await serve(request, CHAT)


@csrf_exempt
@allow_only("POST")
async def completions(request):
    return await serve(request, COMPLETIONS)


@csrf_exempt
@allow_only("POST")
async def embeddings(request):
    return await serve(request, EMBEDDINGS)


@csrf_exempt
@allow_only("POST")
async def create_response(request):
    return await serve(request, RESPONSES)


async def _key_or_error(request):
    try:
        return await aauthenticate(_secret(request)), None
    except GatewayError as exc:
        return None, exc.response()


@allow_only("GET")
async def model_list(request):
    key, error = await _key_or_error(request)
    if error:
        return error
    catalog = await current_catalog()
    allowed = catalog.allowed_for(key.grant_id)
    data = [
        {"id": m.name, "object": "model", "created": 0, "owned_by": "anvil"}
        for m in catalog.models.values()
        if m.id in allowed and m.available
    ]
    return JsonResponse({"object": "list", "data": sorted(data, key=lambda m: m["id"])})


@allow_only("GET")
async def model_retrieve(request, model: str):
    """One model the key's grant may use, in OpenAI's shape with Anvil's fields; 404 for any
    other name (a model of another grant is not told apart from an unknown one)."""
    key, error = await _key_or_error(request)
    if error:
        return error
    catalog = await current_catalog()
    found = catalog.models.get(model)
    if found is None or found.id not in catalog.allowed_for(key.grant_id):
        return unknown_model(model).response()
    return JsonResponse(
        {
            "id": found.name,
            "object": "model",
            "created": 0,
            "owned_by": "anvil",
            "status": "active" if found.available else "inactive",
            **_model_facts(found),
            "tags": list(found.tags),
        }
    )


def _model_facts(model) -> dict:
    """What both model listings tell of a model beside its name, status and tags."""
    return {
        "kind": model.kind,
        "prompt_price": _decimal_text(model.prompt_price),
        "completion_price": _decimal_text(model.completion_price),
        "price_unit": "credits per 1M tokens",
        "context_window": model.context_window,
        # what one image part counts in the hold and the context window (tokens.for_model);
        # null: the model takes no images
        "image_tokens": None
        if model.image_tokens is None
        else dict(zip(("low", "high"), model.image_tokens, strict=True)),
    }


def _decimal_text(value) -> str:
    """A price as plain decimal digits, without trailing zeros: "10", not "1E+1"."""
    return f"{value.normalize():f}"


@allow_only("GET")
async def model_list_plgrid(request):
    key, error = await _key_or_error(request)
    if error:
        return error
    catalog = await current_catalog()
    allowed = catalog.allowed_for(key.grant_id)
    data = []
    for m in sorted(catalog.models.values(), key=lambda m: m.name):
        accessible = m.id in allowed and not (m.non_commercial and key.owner.is_commercial)
        data.append(
            {
                "name": m.name,
                "status": "Active" if m.available else "Inactive",
                **_model_facts(m),
                "tags": [
                    "Active" if m.available else "Inactive",
                    "Accessible" if accessible else "Inaccessible",
                    *m.tags,
                ],
            }
        )
    return JsonResponse({"object": "list", "data": data})


@allow_only("GET")
async def health(request):
    catalog = await current_catalog()
    name = request.GET.get("model")
    if name is not None and name not in catalog.models:
        return unknown_model(name).response()
    models = (
        [catalog.models[name]] if name else sorted(catalog.models.values(), key=lambda m: m.name)
    )
    data = []
    for m in models:
        try:
            stats = await slot_stats(m.name)
        except QueueFull:  # the shared queue store (Redis) is unreachable
            stats = {"in_flight": None, "queued": None}
        data.append(
            {
                "model": m.name,
                "status": "up" if m.available else "down",
                "last_check": m.last_check.isoformat() if m.last_check else None,
                "in_flight": stats["in_flight"],
                "queued": stats["queued"],
                "max_concurrency": m.max_concurrency,
                "queue_size": m.queue_size,
            }
        )
    body = data[0] if name else {"checked_at": time.time(), "models": data}
    return JsonResponse(body)
