"""A backend's own count of a chat prompt as its engine renders it (chat template included),
for a stream that ended without usage: the catalog's ``tokenize`` says how its backend counts.

* ``vllm``: ``POST /tokenize`` with the messages (and tools), vLLM's ``{"count": N}``;
* ``llama.cpp``: llama.cpp's server renders the messages with ``POST /apply-template`` and
  counts the rendered prompt with ``POST /tokenize`` (``{"tokens": [...]}``).

Both paths are at the server's root (the base URL without ``/v1``). Asked once the stream's
last event arrived (never on the way to the first token), within GATEWAY_TOKENIZE_SECONDS;
any failure is None and the request is billed by Anvil's estimate (tokens.py).
"""

from __future__ import annotations

import asyncio
import json
import logging

from django.conf import settings

from apps.catalog.models import Tokenize
from apps.gateway.catalog import ServedModel
from apps.gateway.upstream import backend_post
from lib.backend_http import BackendConnectionError

logger = logging.getLogger(__name__)


class _Unusable(Exception):
    """The backend's answer to a count is not one."""


async def _post(model: ServedModel, path: str, payload: dict) -> dict:
    root = model.base_url.removesuffix("/v1")
    response = await backend_post(
        root + path, body=json.dumps(payload).encode(), secret=model.backend_secret
    )
    async with response:
        content = await response.read()
    if response.status != 200:
        raise _Unusable(f"status {response.status}")
    answer = json.loads(content)
    if not isinstance(answer, dict):
        raise _Unusable("not a JSON object")
    return answer


async def _count(model: ServedModel, body: dict) -> object:
    prompt = {"model": body.get("model"), "messages": body["messages"]}
    if body.get("tools"):
        prompt["tools"] = body["tools"]
    if model.tokenize == Tokenize.VLLM:
        payload = {**prompt, "add_generation_prompt": True}
        return (await _post(model, "/tokenize", payload)).get("count")
    rendered = (await _post(model, "/apply-template", prompt)).get("prompt")
    if not isinstance(rendered, str):
        raise _Unusable("no rendered prompt")
    tokens = (await _post(model, "/tokenize", {"content": rendered, "add_special": True})).get(
        "tokens"
    )
    return len(tokens) if isinstance(tokens, list) else None


async def rendered_prompt_tokens(model: ServedModel, body: dict) -> int | None:
    """The backend's count of the prompt the chat body ``body`` (as forwarded) renders to, or
    None when its backend can not count one, or did not in time."""
    if not model.tokenize or not isinstance(body.get("messages"), list):
        return None
    try:
        async with asyncio.timeout(settings.GATEWAY_TOKENIZE_SECONDS):
            count = await _count(model, body)
    except (BackendConnectionError, TimeoutError, ValueError, _Unusable) as exc:
        logger.warning(
            "The backend of model %s did not count a prompt (%s); billed by the estimate",
            model.name, type(exc).__name__,
        )  # fmt: skip
        return None
    if type(count) is not int or not 0 < count <= 2**31 - 1:
        return None
    return count
