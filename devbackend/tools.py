"""Deterministic tool calls, enough to prove that tools pass through a gateway."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from devbackend.wire import BadRequest

_WEATHER_RE = re.compile(r"\bweather\b", re.IGNORECASE)
_FIXED = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}, "null": None}
PIECE = 4  # characters of arguments per streamed piece (and per completion token)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str

    def pieces(self) -> list[str]:
        return [self.arguments[i : i + PIECE] for i in range(0, len(self.arguments), PIECE)]


def _functions(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list.", param="tools")
    functions = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest("Each tool needs a function with a name.", param="tools")
        functions.append(function)
    return functions


def _chosen_name(tool_choice: Any) -> str | None:
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise BadRequest("tool_choice must name a function.", param="tool_choice")
        return name
    if tool_choice not in (None, "auto", "none", "required"):
        raise BadRequest("tool_choice must be none, auto, required or a function.")
    return None


def _arguments(function: dict[str, Any], *, text: str) -> str:
    schema = function.get("parameters") or {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    values = {}
    for name, spec in (properties or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        if spec.get("enum"):
            values[name] = spec["enum"][0]
        elif spec.get("type", "string") == "string":
            values[name] = text or "Paris"
        else:
            values[name] = _FIXED.get(spec.get("type"), None)
    return json.dumps(values, ensure_ascii=False, sort_keys=True)


def tool_call_pick(
    *, tools: Any, tool_choice: Any, user_text: str, echo: str, seed: bytes
) -> ToolCall | None:
    """The tool call to answer with, or None for a plain text reply."""
    if not tools:
        return None
    functions = _functions(tools)
    name = _chosen_name(tool_choice)
    if tool_choice == "none" or (
        name is None and tool_choice != "required" and not _WEATHER_RE.search(user_text)
    ):
        return None
    weather = [f for f in functions if "weather" in f["name"].lower()]
    if name is not None:
        function = next((f for f in functions if f["name"] == name), {"name": name})
    else:
        function = (weather or functions)[0]
    arguments = _arguments(function, text=echo)
    return ToolCall(id=f"call_{seed.hex()[:24]}", name=function["name"], arguments=arguments)
