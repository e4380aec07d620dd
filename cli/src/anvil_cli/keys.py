"""``anvil api-keys create``: a new API key, made with the management key."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import click

from anvil_cli.client import ApiError
from anvil_cli.output import credits, echo_json, table, warn
from anvil_cli.session import Session, pass_session

CREATE = "/api/v1/management/api_keys/create"
# The API's field names, as the CLI's options: a refusal names what the user typed.
OPTIONS = {
    "name": "--name",
    "grant_id": "--grant",
    "comment": "--comment",
    "expires_at": "--expires",
    "monthly_credits_quota": "--monthly-limit",
    "total_credits_quota": "--total-limit",
}
SHOWN_ONCE = (
    "this is the only time the key is shown: Anvil keeps only a hash of it. Store it now "
    "(e.g. `anvil configure --api-key`); if it is lost, create a new key."
)


class CreditsType(click.ParamType):
    """A number of credits, exact: sent to the server as the decimal string typed."""

    name = "CREDITS"

    def convert(self, value, param, ctx) -> str:
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or number < 0 or "_" in str(value):
            self.fail(f"{value!r} is not a number of credits (e.g. 100 or 12.5).", param, ctx)
        return str(value).strip()


@click.group("api-keys", short_help="Create API keys.")
def api_keys() -> None:
    """API keys (made with a management key; list, revoke and change them in the portal)."""


@api_keys.command("create", short_help="Create an API key; print its secret once.")
@click.option(
    "--grant", required=True, metavar="ID", help="The grant: its ID or identifier (plgexample-gpu)."
)
@click.option(
    "--name", required=True, metavar="NAME", help="The key's name, unique among the grant's keys."
)
@click.option("--comment", help="What the key is for.")
@click.option(
    "--expires",
    metavar="DATE",
    help="When it expires: a date (at its start, in the service's time zone) or an ISO 8601 "
    "time. Default: the server's (30 days). It can not be changed later.",
)
@click.option("--monthly-limit", type=CreditsType(), help="Credits per calendar month.")
@click.option("--total-limit", type=CreditsType(), help="Credits in all.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@pass_session
def create(session: Session, grant, name, comment, expires, monthly_limit, total_limit, as_json):
    """Create an API key in a grant with the management key, and print its secret once.

    Without a limit the key may spend up to the grant's and your own monthly limits."""
    body = {"name": name, "grant_id": grant}
    optional = {
        "comment": comment,
        "expires_at": expires,
        "monthly_credits_quota": monthly_limit,
        "total_credits_quota": total_limit,
    }
    body.update({field: value for field, value in optional.items() if value is not None})
    client = session.client()
    try:
        key = client.post(CREATE, body, key=session.needed("management_key")).data
    except ApiError as exc:
        raise exc.with_params(OPTIONS) from None
    if as_json:
        echo_json(key)
    else:
        _describe(key)
    warn(SHOWN_ONCE)


def _describe(key: dict) -> None:
    rows = [
        ("id", key["id"]),
        ("grant", key["grant_id"]),
        ("expires", key["expires_at"]),
        ("monthly limit", credits(key["monthly_credits_quota"])),
        ("total limit", credits(key["total_credits_quota"])),
    ]
    click.echo(f"Created API key '{key['name']}':")
    click.echo(table(rows))
    click.echo()
    click.echo(key["key"])
