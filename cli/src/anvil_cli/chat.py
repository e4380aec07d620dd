"""``anvil chat``: one prompt, its answer as it is generated, and what it cost."""

from __future__ import annotations

import json
import sys
from decimal import Decimal

import click

from anvil_cli.billing import LIMIT_NAMES
from anvil_cli.catalog import MODELS
from anvil_cli.client import ApiError, Client
from anvil_cli.output import note
from anvil_cli.session import Session, pass_session

CHAT = "/api/v1/chat/completions"
CHAT_KINDS = {"chat", "vlm"}


@click.command(short_help="Chat: one prompt, the answer streamed.")
@click.argument("prompt")
@click.option(
    "--model", "-m", envvar="ANVIL_MODEL", help="Default: the cheapest chat model of yours."
)
@click.option("--system", "-s", help="A system message before the prompt.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Most tokens in the answer.")
@click.option("--stream/--no-stream", default=True, show_default=True, help="Print as it comes.")
@pass_session
def chat(session: Session, prompt: str, model, system, max_tokens, stream: bool) -> None:
    """Send PROMPT (- reads it from standard input) and print the answer; the credits it cost
    go to standard error at the end."""
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise click.UsageError("The prompt is empty.")
    client, key = session.client(), session.needed("api_key")
    body = {"model": model or default_model(client, key), "messages": _messages(prompt, system)}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        charged = _streamed(client, key, body)
    else:
        answer = client.post(CHAT, body, key=key)
        click.echo(answer.data["choices"][0]["message"]["content"] or "")
        charged = {
            "credits_charged": answer.headers.get("x-anvil-credits-charged"),
            "remaining": answer.headers.get("x-anvil-credits-remaining"),
            "limited_by": answer.headers.get("x-anvil-limited-by"),
        }
    _report(charged)


def _messages(prompt: str, system: str | None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": prompt}]


def default_model(client: Client, key: str) -> str:
    """The cheapest chat model the key may use and that is up (on a tie, the first by name)."""
    usable = [
        model
        for model in client.get(MODELS, key=key).data["data"]
        if model["kind"] in CHAT_KINDS and {"Accessible", "Active"} <= set(model["tags"])
    ]
    if not usable:
        raise click.ClickException("This key may use no chat model that is up: see `anvil models`.")
    chosen = min(usable, key=lambda model: (_price(model), model["name"]))["name"]
    note(f"Model: {chosen}, the cheapest of yours (choose with --model or ANVIL_MODEL)")
    return chosen


def _price(model: dict) -> Decimal:
    return Decimal(model["prompt_price"]) + Decimal(model["completion_price"])


def _streamed(client: Client, key: str, body: dict) -> dict | None:
    """Print the answer's text as its events arrive; what Anvil said it charged (the stream's
    ``: anvil {...}`` comment). A failure the stream reports ends in an ApiError after that."""
    charged, failure, done, ends_in_newline = None, None, False, True
    with client.stream(CHAT, {**body, "stream": True}, key=key) as lines:
        for line in lines:
            if line.startswith(": anvil "):
                charged = _event(line[len(": anvil ") :], client)
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            event = _event(data, client)
            if "error" in event:
                failure = event["error"]
                continue
            text = "".join(_delta(choice) for choice in event.get("choices") or [])
            if text:
                click.echo(text, nl=False)
                sys.stdout.flush()
                ends_in_newline = text.endswith("\n")
    if not ends_in_newline:
        click.echo()
    if failure is not None:
        _report(charged)
        message = failure.get("message") or "The answer broke off."
        raise ApiError(message, code=failure.get("code"))
    if not done:
        _report(charged)
        raise ApiError(f"The answer from {client.root} broke off before its end.")
    return charged


def _event(data: str, client: Client) -> dict:
    try:
        event = json.loads(data)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise ApiError(f"The server at {client.root} sent an event that is not a JSON object.")
    return event


def _delta(choice) -> str:
    delta = choice.get("delta") if isinstance(choice, dict) else None
    return (delta.get("content") if isinstance(delta, dict) else None) or ""


def _report(charged: dict | None) -> None:
    if not charged or charged.get("credits_charged") is None:
        note("Credits charged: unknown (the server did not say).")
        return
    line = f"Credits charged: {charged['credits_charged']}"
    if charged.get("remaining") is not None:
        line += f"; {charged['remaining']} left"
        if charged.get("limited_by"):
            line += f" under {LIMIT_NAMES.get(charged['limited_by'], charged['limited_by'])}"
    note(line + ".")
