"""``anvil billing status``: what the API key has spent and what is left under each limit."""

from __future__ import annotations

from decimal import Decimal

import click

from anvil_cli.output import credits, echo_json, table
from anvil_cli.session import Session, pass_session

USAGE = "/api/v1/usage"
LIMIT_NAMES = {
    "grant": "the grant's credits",
    "key_total": "the key's total limit",
    "key_monthly": "the key's monthly limit",
    "member_monthly": "the member's monthly limit",
}

# The four budgets in the answer: (name, label, object, limit, used, left) of each.
BUDGETS = [
    ("grant", "grant's credits", "grant", "allocated", "used", "left"),
    ("key_total", "key, in total", "key", "total_limit", "used_total", "total_left"),
    ("key_monthly", "key, this month", "key", "monthly_limit", "used_month", "monthly_left"),
    (
        "member_monthly",
        "member, this month",
        "member",
        "monthly_limit",
        "used_month",
        "monthly_left",
    ),
]


@click.group(short_help="What the API key spent and may still spend.")
def billing() -> None:
    """Credits: what the API key spent and may still spend."""


@billing.command(short_help="Consumption, and what is left under each limit.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@pass_session
def status(session: Session, as_json: bool) -> None:
    """This month's and total consumption of the API key, and what is left under each of the
    four limits a request must fit in; the binding one (least left) is marked.

    --json prints GET /api/v1/usage as the server answered it."""
    data = session.client().get(USAGE, key=session.needed("api_key")).data
    if as_json:
        echo_json(data)
        return
    key, grant = data["key"], data["grant"]
    click.echo(f"Billing status of this API key in {data['period']}")
    click.echo(f"Spent: {key['used_month']} credits this month, {key['used_total']} in total.")
    click.echo()
    lines = []
    for name, label, part, limit, used, left in BUDGETS:
        budget = data[part]
        mark = "<- binding" if name == data["limited_by"] else ""
        left_value = _left(budget, left, limit, used)
        lines.append(
            (label, credits(budget[limit]), budget[used], credits(left_value, none="-"), mark)
        )
    click.echo(table(lines, headers=["BUDGET", "LIMIT", "USED", "LEFT", ""], right={1, 2, 3}))
    if Decimal(grant["held"]):
        click.echo(f"(The grant's requests in flight hold {grant['held']} credits.)")
    click.echo()
    binding = LIMIT_NAMES.get(data["limited_by"], data["limited_by"])
    click.echo(f"The next request may spend up to {data['remaining']} credits ({binding}).")


def _left(budget: dict, field: str, limit: str, used: str) -> str | None:
    """What is left under a limit (servers before the *_left fields: limit - used)."""
    if field in budget:
        return budget[field]
    if budget[limit] is None:
        return None
    return str(max(Decimal(budget[limit]) - Decimal(budget[used]), Decimal(0)))
