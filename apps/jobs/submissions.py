"""Reading a job submission: the reference's body (``app``, ``commandLine``, ``tag``) or the
native one (``model``, ``inputs``, ``parameters``). Shape only; the model and the key are
checked by ``services.jobs_submit``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings

APPS = ("text-inference", "gridrepublic:text-inference")
MAX_INPUT_CHARS = 1_000_000


class InvalidSubmission(ValueError):
    """What is wrong with a submission, naming the field (answered as 400)."""


@dataclass(frozen=True)
class Submission:
    model_name: str
    app: str
    inputs: list[str]
    parameters: dict
    model_field: str = "model"  # where the model was named: "tag" in the reference's body


def submission_parse(raw: bytes) -> Submission:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSubmission(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise InvalidSubmission("The request body must be a JSON object.")
    if "commandLine" in body or "tag" in body or "app" in body:
        return _reference(body)
    return _native(body)


def _reference(body: dict) -> Submission:
    app = body.get("app")
    if app not in APPS:
        raise InvalidSubmission(f"app: must be one of {', '.join(APPS)}, not {app!r}.")
    text = body.get("commandLine")
    if not isinstance(text, str):
        raise InvalidSubmission('commandLine: must be a JSON string such as {"inputs": ["..."]}.')
    try:
        command = json.loads(text)
    except ValueError as exc:
        raise InvalidSubmission(f"commandLine: not valid JSON ({exc}).") from None
    if not isinstance(command, dict):
        raise InvalidSubmission('commandLine: must hold a JSON object such as {"inputs": [...]}.')
    parameters = {name: value for name, value in command.items() if name != "inputs"}
    return Submission(
        model_name=_model(body.get("tag"), "tag"), app=app,
        inputs=_inputs(command.get("inputs"), "commandLine.inputs"),
        parameters=_parameters(parameters, "commandLine"), model_field="tag",
    )  # fmt: skip


def _native(body: dict) -> Submission:
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidSubmission("parameters: must be an object.")
    return Submission(
        model_name=_model(body.get("model"), "model"), app=APPS[0],
        inputs=_inputs(body.get("inputs"), "inputs"),
        parameters=_parameters(parameters, "parameters"),
    )  # fmt: skip


def _model(name: object, field: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidSubmission(f"{field}: the name of the model is required.")
    return name.strip()


def _inputs(inputs: object, field: str) -> list[str]:
    if not isinstance(inputs, list) or not inputs:
        raise InvalidSubmission(f"{field}: a non-empty list of prompts is required.")
    limit = settings.JOBS_MAX_INPUTS
    if len(inputs) > limit:
        raise InvalidSubmission(
            f"{field}: {len(inputs)} inputs, more than the {limit} one submission may have."
        )
    for index, text in enumerate(inputs):
        if not isinstance(text, str) or not text.strip():
            raise InvalidSubmission(f"{field}[{index}]: must be a non-empty string.")
        if len(text) > MAX_INPUT_CHARS:
            raise InvalidSubmission(f"{field}[{index}]: longer than {MAX_INPUT_CHARS} characters.")
    return inputs


def _number(value: object, low: float, high: float) -> bool:
    return type(value) in (int, float) and low <= value <= high


CHECKS = {
    "max_tokens": (lambda v: type(v) is int and 1 <= v <= 2**31 - 1, "a positive integer"),
    "temperature": (lambda v: _number(v, 0, 2), "a number from 0 to 2"),
    "top_p": (lambda v: _number(v, 0, 1), "a number from 0 to 1"),
    "stop": (
        lambda v: (
            isinstance(v, str)
            or (isinstance(v, list) and len(v) <= 4 and all(isinstance(s, str) for s in v))
        ),
        "a string or a list of up to 4 strings",
    ),
    "system": (lambda v: isinstance(v, str), "a string"),
}


def _parameters(parameters: dict, field: str) -> dict:
    for name, value in parameters.items():
        if name not in CHECKS:
            raise InvalidSubmission(
                f"{field}.{name}: unknown parameter; known: {', '.join(CHECKS)}."
            )
        check, wanted = CHECKS[name]
        if not check(value):
            raise InvalidSubmission(f"{field}.{name}: must be {wanted}.")
    return parameters


def chat_body(*, prompt: str, parameters: dict) -> dict:
    """The streaming chat request a job sends (the gateway adds the backend's model name)."""
    messages = [{"role": "user", "content": prompt}]
    if parameters.get("system"):
        messages.insert(0, {"role": "system", "content": parameters["system"]})
    body = {"messages": messages, "stream": True}
    for name in ("max_tokens", "temperature", "top_p", "stop"):
        if name in parameters:
            body[name] = parameters[name]
    return body
