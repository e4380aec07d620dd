"""``POST /v1/responses`` as vLLM and Ollama serve it: the request is read as the chat request
it amounts to, and the chat reply is told in the Responses API's shape (a whole response) or
events (``response.created`` … ``response.completed``, each with its ``sequence_number``)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from devbackend import wire
from devbackend.replies import ChatToolCall, Reply, StreamParts
from devbackend.wire import TOKEN, BadRequest

ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat request a Responses request amounts to (text, function tools and calls)."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    value = body.get("input")
    if isinstance(value, str):
        messages.append({"role": "user", "content": value})
    elif isinstance(value, list):
        for item in value:
            messages.append(_message(item))
    else:
        raise BadRequest("input must be a string or a list of items.", param="input")
    chat = {"model": body.get("model"), "messages": messages, "stream": body.get("stream", False)}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "tool_choice"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if isinstance(chat.get("tool_choice"), dict):
        chat["tool_choice"] = {
            "type": "function",
            "function": {"name": chat["tool_choice"].get("name")},
        }
    if body.get("tools"):
        chat["tools"] = [
            {"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}}
            for tool in body["tools"]
            if isinstance(tool, dict)
        ]
    return chat


def _message(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise BadRequest("Each input item must be an object.", param="input")
    kind = item.get("type", "message")
    if kind == "function_call":
        call = {"id": item.get("call_id"), "type": "function"}
        call["function"] = {"name": item.get("name"), "arguments": item.get("arguments")}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if kind == "function_call_output":
        return {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")}
    if kind != "message" or item.get("role") not in ROLES:
        raise BadRequest(f"Unsupported input item {kind!r}.", param="input")
    content = item.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return {"role": ROLES[item["role"]], "content": content}


SEQUENCE = "\x00sequence\x00"  # where an event template takes its sequence number


@dataclass
class ResponsesReply:
    """A chat reply told in the Responses API's shape."""

    chat: Reply

    def __post_init__(self) -> None:
        self.head = self.chat.head
        self.stream, self.pieces = self.chat.stream, self.chat.pieces
        self.id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"{'fc' if self.call else 'msg'}_{uuid.uuid4().hex}"
        self.created = int(time.time())

    @property
    def call(self):
        return self.chat.call if isinstance(self.chat, ChatToolCall) else None

    def item(self, text: str, status: str) -> dict[str, Any]:
        if self.call:
            call = self.call
            return {
                "id": self.item_id,
                "type": "function_call",
                "status": status,
                "call_id": call.id,
                "name": call.name,
                "arguments": text,
            }
        part = {"type": "output_text", "text": text, "annotations": []}
        return {
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [part] if status == "completed" else [],
        }

    def response(self, status: str, output: list, usage: dict | None) -> dict[str, Any]:
        incomplete = status == "incomplete"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "model": self.head["model"],
            "output": output,
            "usage": usage,
        }

    def _usage(self, with_usage: bool) -> dict | None:
        if not with_usage:
            return None
        prompt, completion = self.chat.prompt_tokens, len(self.pieces)
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }

    def _status(self) -> str:
        return "incomplete" if self.chat.finish == "length" else "completed"

    def body(self, *, with_usage: bool) -> dict[str, Any]:
        item = self.item("".join(self.pieces), "completed")
        return self.response(self._status(), [item], self._usage(with_usage))

    def stream_parts(self, *, with_usage: bool) -> StreamParts:
        events = Events()
        started = self.response("in_progress", [], None)
        head = events.send("response.created", response=started)
        head += events.send("response.in_progress", response=started)
        head += events.send(
            "response.output_item.added", output_index=0, item=self.item("", "in_progress")
        )
        where = {"item_id": self.item_id, "output_index": 0}
        if self.call:
            template = EventTemplate("response.function_call_arguments.delta", where, events)
        else:
            part = {"type": "output_text", "text": "", "annotations": []}
            head += events.send("response.content_part.added", **where, content_index=0, part=part)
            template = EventTemplate(
                "response.output_text.delta", {**where, "content_index": 0}, events
            )
        events.number += len(self.pieces)
        text = "".join(self.pieces)
        item = self.item(text, "completed")
        if self.call:
            tail = events.send("response.function_call_arguments.done", **where, arguments=text)
        else:
            part = item["content"][0]
            tail = events.send("response.output_text.done", **where, content_index=0, text=text)
            tail += events.send("response.content_part.done", **where, content_index=0, part=part)
        tail += events.send("response.output_item.done", output_index=0, item=item)
        status = self._status()
        done = self.response(status, [item], self._usage(with_usage))
        tail += events.send(f"response.{status}", response=done)
        return StreamParts(head=head, template=template, tail=tail)


class Events:
    """Numbers a stream's events as they are written."""

    def __init__(self) -> None:
        self.number = 0

    def send(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.number, **fields}
        self.number += 1
        return b"event: " + kind.encode() + b"\n" + wire.sse(data)


class EventTemplate:
    """A delta event pre-rendered around its token and sequence number."""

    def __init__(self, kind: str, where: dict[str, Any], events: Events) -> None:
        self.number = events.number
        rendered = events.send(kind, **where, delta=TOKEN)
        events.number = self.number  # the deltas are numbered as they are rendered
        rendered = rendered.replace(
            b'"sequence_number":' + str(self.number).encode(), wire.encode(SEQUENCE)
        )
        self.before, rest = rendered.split(wire.encode(SEQUENCE))
        self.middle, self.after = rest.split(wire.encode(TOKEN))

    def render(self, token: str) -> bytes:
        number = str(self.number).encode()
        self.number += 1
        return (
            self.before
            + b'"sequence_number":'
            + number
            + self.middle
            + wire.encode(token)
            + self.after
        )
