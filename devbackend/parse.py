"""Validate request bodies and turn them into replies; bad input → :class:`BadRequest`."""

from __future__ import annotations

import json
from typing import Any

from devbackend import text, wire
from devbackend.embeddings import DEFAULT_DIMENSIONS, MAX_DIMENSIONS
from devbackend.replies import ChatText, ChatToolCall, Reply, TextCompletion
from devbackend.tools import tool_call_pick
from devbackend.wire import BadRequest


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("You must provide a model parameter.", param="model")
    return model


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{name} must be a boolean.", param=name)
    return bool(value)


def _count(body: dict[str, Any], name: str, *, minimum: int = 1) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(f"{name} must be an integer >= {minimum}.", param=name)
    return value


def _streaming(body: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage)."""
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("stream_options must be an object.", param="stream_options")
    return stream, stream and _flag(options or {}, "include_usage")


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    if _count(body, "n") not in (None, 1):
        raise BadRequest("The dev backend returns one choice: n must be 1.", param="n")
    limit = _count(body, "max_completion_tokens") or _count(body, "max_tokens")
    min_tokens = _count(body, "min_tokens", minimum=0) or 0
    return {"limit": limit, "min_tokens": min_tokens, "ignore_eos": _flag(body, "ignore_eos")}


def messages_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list.", param="messages")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest("Each message must be an object with a role.", param="messages")
        if not isinstance(message.get("content"), str | list | None):
            raise BadRequest("Message content must be a string or a list.", param="messages")
    return messages


def chat_reply(body: dict[str, Any], *, context_tokens: int = text.DEFAULT_CONTEXT_TOKENS) -> Reply:
    model, messages = model_of(body), messages_of(body)
    stream, include_usage = _streaming(body)
    sampling = _sampling(body)
    seed, user_text = text.seed(messages), text.last_user_text(messages)
    echo = text.echo_text(user_text)
    kind = "chat.completion.chunk" if stream else "chat.completion"
    prompt_tokens = text.chat_prompt_tokens(messages)
    room = text.reply_room(context_tokens=context_tokens, prompt_tokens=prompt_tokens)
    common = {
        "head": wire.envelope(kind=kind, model=model),
        "prompt_tokens": prompt_tokens,
        "stream": stream,
        "include_usage": include_usage,
    }
    # After a tool's result the model answers in text, as real models do.
    answered = messages[-1].get("role") == "tool"
    call = (
        None
        if answered
        else tool_call_pick(
            tools=body.get("tools"),
            tool_choice=body.get("tool_choice"),
            user_text=user_text,
            echo=echo,
            seed=seed,
        )
    )
    if call is not None:
        return ChatToolCall(**common, pieces=call.pieces(), finish="tool_calls", call=call)
    pieces, finish = text.reply_tokens(seed=seed, echo=echo, room=room, **sampling)
    return ChatText(**common, pieces=pieces, finish=finish)


def _token_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


def _inputs(value: Any, *, param: str) -> list[str | list[int]]:
    """A string, a list of strings, a token list or a list of token lists, as a list."""
    if isinstance(value, str) or (_token_list(value) and value):
        return [value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(item, str) or (_token_list(item) and item) for item in value)
    ):
        return value
    raise BadRequest(
        f"{param} must be a string, a list of strings, a token list or a list of token lists.",
        param=param,
    )


def prompt_of(body: dict[str, Any]) -> str | list[int]:
    """The one prompt of a completions (or tokenize) body."""
    prompts = _inputs(body.get("prompt"), param="prompt")
    if len(prompts) != 1:
        raise BadRequest("The dev backend takes one prompt per request.", param="prompt")
    return prompts[0]


def completion_reply(
    body: dict[str, Any], *, context_tokens: int = text.DEFAULT_CONTEXT_TOKENS
) -> Reply:
    model = model_of(body)
    prompt = prompt_of(body)
    stream, include_usage = _streaming(body)
    prompt_text = prompt if isinstance(prompt, str) else ""
    prompt_tokens = text.prompt_tokens(prompt)
    pieces, finish = text.reply_tokens(
        seed=text.seed(prompt),
        echo=text.echo_text(prompt_text),
        room=text.reply_room(context_tokens=context_tokens, prompt_tokens=prompt_tokens),
        **_sampling(body),
    )
    return TextCompletion(
        head=wire.envelope(kind="text_completion", model=model),
        prompt_tokens=prompt_tokens,
        pieces=pieces,
        finish=finish,
        stream=stream,
        include_usage=include_usage,
    )


def embedding_request(body: dict[str, Any]) -> tuple[str, list[str | list[int]], int, str]:
    """(model, inputs, dimensions, encoding_format)."""
    model = model_of(body)
    inputs = _inputs(body.get("input"), param="input")
    dimensions = _count(body, "dimensions") or DEFAULT_DIMENSIONS
    if dimensions > MAX_DIMENSIONS:
        raise BadRequest(f"dimensions must be at most {MAX_DIMENSIONS}.", param="dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise BadRequest("encoding_format must be float or base64.", param="encoding_format")
    return model, inputs, dimensions, encoding
