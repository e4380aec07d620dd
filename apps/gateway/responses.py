"""OpenAI's Responses API (``POST /v1/responses``) on backends that serve only chat completions.

A Responses request is translated into a chat completions request (``chat_request``), admitted,
held, charged and relayed like any chat request, and the backend's answer is translated back:
a whole answer by ``response_from_chat``, a stream event by event by ``ResponseStream``.
Backends marked ``responses: native`` in the catalog get the request as it came
(``native_upstream``); their answers pass through untouched.

What translates: text input (a string, or messages with ``input_text`` / ``output_text`` parts,
``input_image`` parts given by URL), function tools, ``function_call`` and
``function_call_output`` items, ``instructions``, ``tool_choice``, ``text.format`` and the
sampling settings. Anvil stores no content, so ``previous_response_id``, ``item_reference``
items and ``background`` are refused (400) unless the backend is native, and so is every input
or tool type a chat backend could not be given faithfully.
"""

from __future__ import annotations

import json
import secrets
import time
from contextlib import aclosing

from apps.gateway import parsing
from apps.gateway.errors import GatewayError
from apps.gateway.tokens import PromptSize

# Settings a chat backend takes under the same name and meaning.
PASSED_ON = ("temperature", "top_p", "parallel_tool_calls", "user", "seed")
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _refuse(message: str, param: str, code: str = "unsupported_content") -> GatewayError:
    return GatewayError(400, message, code=code, param=param)


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, code="invalid_value", param=param)


def check_request(body: dict, *, native: bool) -> None:
    """What every Responses request must be, native or not."""
    if body.get("input") is None:
        raise _invalid("'input' is required: a string or a list of input items.", "input")
    if not isinstance(body["input"], str | list):
        raise _invalid("'input' must be a string or a list of input items.", "input")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _invalid("'instructions' must be a string.", "instructions")
    tokens = body.get("max_output_tokens")
    if tokens is not None and (
        isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1
    ):
        raise _invalid(
            "'max_output_tokens' must be a whole number of at least 1.", "max_output_tokens"
        )
    if body.get("background"):
        raise _refuse(
            "Anvil stores no responses, so 'background' can not be used; send the request "
            "without it (or with stream: true).",
            "background",
            code="unsupported_value",
        )
    if body.get("previous_response_id") is not None and not native:
        raise _refuse(
            "Anvil stores no responses, so 'previous_response_id' can not be used with this "
            "model: send the earlier turns in 'input' instead.",
            "previous_response_id",
            code="unsupported_value",
        )
    parsing.require_stream_flag(body)


def chat_request(body: dict) -> dict:
    """The chat completions request a Responses request amounts to (``check_request`` first);
    a 400 for what a chat backend can not be given."""
    messages = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    value = body["input"]
    if isinstance(value, str):
        messages.append({"role": "user", "content": value})
    else:
        for index, item in enumerate(value):
            _add_item(messages, item, f"input[{index}]")
    if not messages:
        raise _invalid("'input' must not be empty.", "input")
    chat = {"model": body["model"], "messages": messages}
    if "stream" in body:
        chat["stream"] = body["stream"]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for name in PASSED_ON:
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("tools"):
        chat["tools"] = _chat_tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    response_format = _chat_response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    effort = (
        body.get("reasoning", {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    )
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    return chat


def _add_item(messages: list, item, param: str) -> None:
    if not isinstance(item, dict):
        raise _invalid(f"{param} must be an object.", param)
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        role = ROLES.get(item.get("role"))
        if role is None:
            raise _invalid(f"{param}.role must be user, assistant, system or developer.", param)
        messages.append({"role": role, "content": _chat_content(item.get("content"), param)})
    elif kind == "function_call":
        call = {
            "id": _text_field(item, "call_id", param),
            "type": "function",
            "function": {
                "name": _text_field(item, "name", param),
                "arguments": _text_field(item, "arguments", param),
            },
        }
        last = messages[-1] if messages else None
        if last and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)  # parallel calls: one assistant message
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        if not isinstance(output, str):
            output = _chat_content(output, f"{param}.output")
        messages.append(
            {"role": "tool", "tool_call_id": _text_field(item, "call_id", param), "content": output}
        )
    elif kind == "reasoning":
        return  # an earlier turn's reasoning: chat backends take none back
    else:
        raise _refuse(
            f"{param} is of type {kind!r}, which Anvil can not pass to this model's backend "
            "(it takes messages, function_call and function_call_output items).",
            param,
        )


def _text_field(item: dict, name: str, param: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise _invalid(f"{param}.{name} must be a string.", f"{param}.{name}")
    return value


def _chat_content(content, param: str):
    """A message's content: a string stays one; parts become chat parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"{param}.content must be a string or a list of parts.", f"{param}.content")
    parts = []
    for index, part in enumerate(content):
        where = f"{param}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": _text_field(part, "text", where)})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _text_field(part, "refusal", where)})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _refuse(
                f"{where} is of type {kind!r}, which Anvil can not pass to this model's backend "
                "(text parts and images by URL are taken).",
                where,
            )
    return parts


def _chat_tools(tools) -> list:
    if not isinstance(tools, list):
        raise _invalid("'tools' must be a list.", "tools")
    chat = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _refuse(
                f"tools[{index}] is of type {kind!r}; this model's backend takes function tools "
                "only.",
                f"tools[{index}]",
                code="unsupported_value",
            )
        function = {"name": _text_field(tool, "name", f"tools[{index}]")}
        for name in ("description", "parameters", "strict"):
            if tool.get(name) is not None:
                function[name] = tool[name]
        chat.append({"type": "function", "function": function})
    return chat


def _chat_tool_choice(choice):
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {
            "type": "function",
            "function": {"name": _text_field(choice, "name", "tool_choice")},
        }
    raise _refuse(
        "'tool_choice' must be auto, none, required or a function.",
        "tool_choice",
        code="unsupported_value",
    )


def _chat_response_format(text) -> dict | None:
    form = text.get("format") if isinstance(text, dict) else None
    if not isinstance(form, dict) or form.get("type") in (None, "text"):
        return None
    if form["type"] == "json_object":
        return {"type": "json_object"}
    if form["type"] == "json_schema":
        schema = {
            key: form[key] for key in ("name", "schema", "strict", "description") if key in form
        }
        return {"type": "json_schema", "json_schema": schema}
    raise _refuse("'text.format.type' must be text, json_object or json_schema.", "text.format")


# -- native backends --------------------------------------------------------------------------


def native_prompt_size(body: dict) -> PromptSize:
    """A native request's prompt, for the hold and the context check: the bytes of its input,
    instructions and tools as JSON (a little more than their text, never less)."""
    value = body["input"]
    size = len(value.encode()) if isinstance(value, str) else len(json.dumps(value).encode())
    for name in ("instructions", "tools"):
        if body.get(name):
            size += len(json.dumps(body[name]).encode())
    items = len(value) if isinstance(value, list) else 1
    return PromptSize(text_bytes=size, messages=max(items, 1) + bool(body.get("instructions")))


def native_upstream(body: dict, admission, *, stream: bool) -> dict:
    """The body a native backend gets: the client's, for the admitted model and output limit."""
    upstream = dict(body)
    upstream["model"] = admission.model.upstream_model
    if "stream" in body:
        upstream["stream"] = stream
    if admission.max_tokens is not None:
        upstream["max_output_tokens"] = admission.max_tokens
    return upstream


# -- answers ----------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def response_object(request: dict, model: str, **fields) -> dict:
    """A response in OpenAI's shape; ``fields`` (id, status, output, usage, …) complete it."""
    response = {
        "id": None,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": request.get("temperature", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }
    response.update(fields)
    return response


def usage_of(chat_usage) -> dict | None:
    """Chat usage (prompt_tokens, completion_tokens) in the Responses' names."""
    if not isinstance(chat_usage, dict):
        return None
    prompt = chat_usage.get("prompt_tokens") or 0
    completion = chat_usage.get("completion_tokens") or 0
    details = chat_usage.get("prompt_tokens_details")
    cached = (details.get("cached_tokens") if isinstance(details, dict) else None) or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


# A chat finish_reason that cut the answer short, as the Responses' incomplete reason.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _status(finish_reason) -> tuple[str, dict | None]:
    reason = INCOMPLETE.get(finish_reason)
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def _message_item(text: str, status: str = "completed", item_id: str | None = None) -> dict:
    return {
        "id": item_id or new_id("msg"),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call_item(call_id: str, name: str, arguments: str, status="completed", item_id=None) -> dict:
    return {
        "id": item_id or new_id("fc"),
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def response_from_chat(chat: dict, request: dict, model: str) -> dict:
    """A whole chat completion as a response (the first choice: Responses have one)."""
    choice = (chat.get("choices") or [{}])[0]
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    output = []
    if message.get("content"):
        output.append(_message_item(str(message["content"])))
    for call in message.get("tool_calls") or []:
        call = call if isinstance(call, dict) else {}
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        output.append(
            _call_item(
                str(call.get("id") or new_id("call")),
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
            )
        )
    status, incomplete = _status(choice.get("finish_reason"))
    return response_object(
        request,
        model,
        id=new_id("resp"),
        status=status,
        incomplete_details=incomplete,
        output=output,
        usage=usage_of(chat.get("usage")),
    )


class ResponseStream:
    """A chat completion stream, as relayed by ``relay.stream``, turned into the Responses'
    events: ``response.created``, the output items as they open, their text and argument
    deltas, and ``response.completed`` (``incomplete``, or ``failed`` when the backend broke
    off) with the usage. Anvil's ``: anvil`` credit comment follows it; no ``[DONE]``."""

    def __init__(self, request: dict, model: str) -> None:
        self.request, self.model = request, model
        self.response = response_object(request, model, id=new_id("resp"))
        self.sequence = 0
        self.items: list[dict] = []  # output items in order; open ones have status in_progress
        self.message: dict | None = None  # the open message item
        self.calls: dict[int, dict] = {}  # chat tool-call index → its open function_call item
        self.finish_reason = None
        self.usage = None
        self.error: dict | None = None

    def event(self, kind: str, **fields) -> str:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n"

    def start(self) -> list[str]:
        return [
            self.event("response.created", response=self.response),
            self.event("response.in_progress", response=self.response),
        ]

    def translate(self, event) -> list[str]:
        """What the Responses client gets for one relayed event."""
        text = event.decode() if isinstance(event, bytes) else event
        if text.startswith(":"):  # Anvil's credit comment: the stream is over
            return [*self.finish(), text]
        data = text[5:].strip() if text.startswith("data:") else ""
        if not data or data == "[DONE]":
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            return []
        if not isinstance(chunk, dict):
            return []
        if isinstance(chunk.get("error"), dict):
            self.error = chunk["error"]
        if chunk.get("usage"):
            self.usage = usage_of(chunk["usage"])
        out = []
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out += self._delta(choice)
        return out

    def _delta(self, choice: dict) -> list[str]:
        out = []
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self.message is None:
                out += self._open(_message_item("", "in_progress"))
                self.message = self.items[-1]
                out.append(
                    self.event(
                        "response.content_part.added",
                        item_id=self.message["id"],
                        output_index=len(self.items) - 1,
                        content_index=0,
                        part={"type": "output_text", "text": "", "annotations": []},
                    )
                )
            self.message["content"][0]["text"] += content
            out.append(
                self.event(
                    "response.output_text.delta",
                    item_id=self.message["id"],
                    output_index=self.items.index(self.message),
                    content_index=0,
                    delta=content,
                    logprobs=[],
                )
            )
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                out += self._call_delta(call)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        return out

    def _call_delta(self, call: dict) -> list[str]:
        out = []
        index = call.get("index", 0)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        item = self.calls.get(index)
        if item is None:
            out += self._close_message()
            call_id = str(call.get("id") or new_id("call"))
            out += self._open(
                _call_item(call_id, str(function.get("name") or ""), "", "in_progress")
            )
            item = self.calls[index] = self.items[-1]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            out.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self.items.index(item),
                    delta=arguments,
                )
            )
        return out

    def _open(self, item: dict) -> list[str]:
        self.items.append(item)
        return [
            self.event("response.output_item.added", output_index=len(self.items) - 1, item=item)
        ]

    def _close_message(self) -> list[str]:
        message, self.message = self.message, None
        if message is None:
            return []
        index, part = self.items.index(message), message["content"][0]
        message["status"] = "completed"
        where = {"item_id": message["id"], "output_index": index, "content_index": 0}
        return [
            self.event("response.output_text.done", **where, text=part["text"], logprobs=[]),
            self.event("response.content_part.done", **where, part=part),
            self.event("response.output_item.done", output_index=index, item=message),
        ]

    def _close_calls(self) -> list[str]:
        out = []
        for item in self.calls.values():
            index = self.items.index(item)
            item["status"] = "completed"
            out.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
            out.append(self.event("response.output_item.done", output_index=index, item=item))
        self.calls = {}
        return out

    def finish(self) -> list[str]:
        out = [*self._close_message(), *self._close_calls()]
        self.response["output"] = self.items
        self.response["usage"] = self.usage
        if self.error is not None:
            self.response["status"] = "failed"
            self.response["error"] = {
                "code": self.error.get("code") or "server_error",
                "message": str(self.error.get("message") or "The model's backend failed."),
            }
            return [*out, self.event("response.failed", response=self.response)]
        status, incomplete = _status(self.finish_reason)
        self.response["status"], self.response["incomplete_details"] = status, incomplete
        done = "response.completed" if status == "completed" else "response.incomplete"
        return [*out, self.event(done, response=self.response)]


async def response_events(request: dict, model: str, relayed):
    """The Responses stream of a relayed chat stream (``relayed`` is closed with this one)."""
    translation = ResponseStream(request, model)
    async with aclosing(relayed):
        started = False
        async for event in relayed:
            if not started:
                started = True
                for out in translation.start():
                    yield out
            for out in translation.translate(event):
                yield out
