"""``anvil configure``: the server and keys of a profile, kept in the config file."""

from __future__ import annotations

import os
import sys

import click

from anvil_cli import config
from anvil_cli.client import server_root
from anvil_cli.output import note, table
from anvil_cli.session import Session, pass_session

API_KEY_PREFIX, MANAGEMENT_KEY_PREFIX = "anv-", "anvm-"
LABELS = {"base_url": "Base URL", "api_key": "API key", "management_key": "Management key"}


def shortened(name: str, value: str) -> str:
    """A key's start only, enough to tell keys apart; the base URL whole."""
    if name == "base_url":
        return value
    return f"{value[:10]}..." if len(value) > 16 else "..."


def _base_url(ctx, param, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        server_root(value)
    except click.ClickException as exc:
        raise click.BadParameter(exc.message) from None
    return value.strip().rstrip("/")


def _api_key(ctx, param, value: str | None) -> str | None:
    if value is not None and value.strip().startswith(MANAGEMENT_KEY_PREFIX):
        raise click.BadParameter("that is a management key (anvm-...); use --management-key.")
    return value.strip() if value is not None else None


def _management_key(ctx, param, value: str | None) -> str | None:
    if value is not None and value.strip().startswith(API_KEY_PREFIX):
        raise click.BadParameter("that is an API key (anv-...); use --api-key.")
    return value.strip() if value is not None else None


CHECKS = {"base_url": _base_url, "api_key": _api_key, "management_key": _management_key}


@click.command(short_help="Set the server and keys of a profile.")
@click.option(
    "--base-url", callback=_base_url, help="The server, or its API's base URL (.../api/v1)."
)
@click.option("--api-key", callback=_api_key, help="An API key (anv-...).")
@click.option("--management-key", callback=_management_key, help="A management key (anvm-...).")
@click.option(
    "--show",
    is_flag=True,
    help="Show the profile (keys shortened) and where each value comes from.",
)
@pass_session
def configure(session: Session, base_url, api_key, management_key, show: bool) -> None:
    """Set the server and keys of a profile (--profile; default: default).

    With no option it asks for each; Enter keeps what is there. With options it sets only
    those (keys given as options end up in your shell's history: prefer the questions). The file
    is in your config directory, readable by you alone (mode 0600). ANVIL_BASE_URL,
    ANVIL_API_KEY and ANVIL_MANAGEMENT_KEY win over it."""
    if show:
        _show(session)
        return
    given = {"base_url": base_url, "api_key": api_key, "management_key": management_key}
    values = {name: value for name, value in given.items() if value is not None}
    if not values:
        values = _ask(session)
    path = config.save(session.profile_name, values)
    note(f"Saved profile '{session.profile_name}' in {path} (readable by you only).")
    for name in values:
        if os.environ.get(config.ENV[name], "").strip():
            note(f"Note: {config.ENV[name]} is set, and wins over the file.")


def _ask(session: Session) -> dict[str, str]:
    """Each value, asked for with what the file holds now as the default."""
    stored = config.load(session.profile_name, environment=False)
    values = {}
    for name, label in LABELS.items():
        current = stored.get(name)
        if name != "base_url":  # a key: not echoed on a terminal (a pipe is read as it is)
            hint = f" [{shortened(name, current)}, Enter keeps it]" if current else ""
            hidden = sys.stdin.isatty()
            answer = click.prompt(
                f"{label}{hint}", default="", show_default=False, hide_input=hidden
            ).strip()
        else:
            answer = click.prompt(label, default=current or "", show_default=bool(current)).strip()
        if answer:
            values[name] = CHECKS[name](None, None, answer)
    return values


def _show(session: Session) -> None:
    profile = session.profile
    rows = [
        (
            label,
            shortened(name, profile.get(name)) if profile.get(name) else "not set",
            profile.sources.get(name, ""),
        )
        for name, label in LABELS.items()
    ]
    click.echo(f"Profile '{session.profile_name}'")
    click.echo(table(rows))
