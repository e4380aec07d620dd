"""Replies of the generating endpoints, as a whole body or as stream chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devbackend import wire
from devbackend.tools import ToolCall
from devbackend.wire import TOKEN, ChunkTemplate


@dataclass
class StreamParts:
    head: bytes  # sent at once, before any token
    template: ChunkTemplate  # one chunk per piece
    tail: bytes  # the final chunk, the usage chunk if asked for, and [DONE]


@dataclass
class Reply:
    """A reply of ``pieces`` (tokens, or pieces of tool-call arguments)."""

    head: dict[str, Any]  # id, object, created, model, system_fingerprint
    prompt_tokens: int
    pieces: list[str]
    finish: str
    stream: bool = False
    include_usage: bool = False

    def body(self, *, with_usage: bool) -> dict[str, Any]:
        body = dict(self.head, choices=[self.choice()])
        if with_usage:
            body["usage"] = wire.usage(self.prompt_tokens, len(self.pieces))
        return body

    def stream_parts(self, *, with_usage: bool) -> StreamParts:
        usage = self.include_usage
        tail = wire.chunk(self.head, self.final_choice(), include_usage=usage)
        if usage and with_usage:
            tokens = wire.usage(self.prompt_tokens, len(self.pieces))
            tail += wire.sse(dict(self.head, choices=[], usage=tokens))
        return StreamParts(
            head=self.first_chunk(),
            template=ChunkTemplate(self.head, self.piece_choice(), include_usage=usage),
            tail=tail + wire.DONE,
        )

    def choice(self) -> dict[str, Any]:
        raise NotImplementedError

    def first_chunk(self) -> bytes:
        return b""

    def piece_choice(self) -> dict[str, Any]:
        raise NotImplementedError

    def final_choice(self) -> dict[str, Any]:
        raise NotImplementedError


class ChatText(Reply):
    def choice(self) -> dict[str, Any]:
        message = {"role": "assistant", "content": "".join(self.pieces)}
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish}

    def first_chunk(self) -> bytes:
        return self._delta_chunk({"role": "assistant", "content": ""})

    def piece_choice(self) -> dict[str, Any]:
        return _delta({"content": TOKEN}, None)

    def final_choice(self) -> dict[str, Any]:
        return _delta({}, self.finish)

    def _delta_chunk(self, delta: dict[str, Any]) -> bytes:
        return wire.chunk(self.head, _delta(delta, None), include_usage=self.include_usage)


@dataclass
class ChatToolCall(ChatText):
    call: ToolCall | None = None

    def choice(self) -> dict[str, Any]:
        call = self.call
        function = {"name": call.name, "arguments": call.arguments}
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call.id, "type": "function", "function": function}],
        }
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish}

    def first_chunk(self) -> bytes:
        call = self.call
        function = {"name": call.name, "arguments": ""}
        tool_call = {"index": 0, "id": call.id, "type": "function", "function": function}
        return self._delta_chunk({"role": "assistant", "content": None, "tool_calls": [tool_call]})

    def piece_choice(self) -> dict[str, Any]:
        return _delta({"tool_calls": [{"index": 0, "function": {"arguments": TOKEN}}]}, None)


class TextCompletion(Reply):
    def choice(self) -> dict[str, Any]:
        return _text("".join(self.pieces), self.finish)

    def piece_choice(self) -> dict[str, Any]:
        return _text(TOKEN, None)

    def final_choice(self) -> dict[str, Any]:
        return _text("", self.finish)


def _delta(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _text(text: str, finish: str | None) -> dict[str, Any]:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
