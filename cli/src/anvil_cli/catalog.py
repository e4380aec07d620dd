"""``anvil models`` and ``anvil health``: the catalog, and how its models are doing."""

from __future__ import annotations

import click

from anvil_cli.output import echo_json, table
from anvil_cli.session import Session, pass_session

MODELS = "/api/v1/models-plgrid-format"
HEALTH = "/api/health"
# Tags with columns of their own.
STATE_TAGS = {"Active", "Inactive", "Accessible", "Inaccessible"}


@click.command(short_help="The models: prices, context, tags, yours or not.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@pass_session
def models(session: Session, as_json: bool) -> None:
    """Every model: prices in credits per 1M tokens, context window, tags, and whether the API
    key may use it."""
    data = session.client().get(MODELS, key=session.needed("api_key")).data
    if as_json:
        echo_json(data)
        return
    rows = [
        (
            m["name"],
            m["kind"],
            m["prompt_price"],
            m["completion_price"],
            m["context_window"],
            m["status"].lower(),
            "yes" if "Accessible" in m["tags"] else "no",
            ", ".join(tag for tag in m["tags"] if tag not in STATE_TAGS),
        )
        for m in data["data"]
    ]
    headers = ["MODEL", "KIND", "PROMPT/1M", "COMPLETION/1M", "CONTEXT", "STATUS", "YOURS", "TAGS"]
    click.echo(table(rows, headers=headers, right={2, 3, 4}))
    click.echo("Prices are credits per 1M tokens; YOURS: whether this key may use the model.")


@click.command(short_help="Whether the models are up, their load.")
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@pass_session
def health(session: Session, model: str | None, as_json: bool) -> None:
    """Whether each model (or MODEL) is up, and its requests in flight and queued.

    With MODEL the exit status says it too: 0 up, 1 down. No key is needed."""
    query = {"model": model} if model else None
    data = session.client().get(HEALTH, query=query).data
    if as_json:
        echo_json(data)
    else:
        rows = [
            (
                m["model"],
                m["status"],
                _count(m["in_flight"], m["max_concurrency"]),
                _count(m["queued"], m["queue_size"]),
                m["last_check"] or "never",
            )
            for m in ([data] if model else data["models"])
        ]
        headers = ["MODEL", "STATUS", "IN FLIGHT", "QUEUED", "LAST CHECK"]
        click.echo(table(rows, headers=headers, right={2, 3}))
    if model and data["status"] != "up":
        raise click.ClickException(f"The model {model} is down.")


def _count(value: int | None, capacity: int) -> str:
    return f"{'?' if value is None else value}/{capacity}"
