"""The ``anvil`` command: its options shared by every subcommand, and the subcommands."""

from __future__ import annotations

import sys

import click

from anvil_cli import __version__, billing, catalog, chat, config, configure, jobs, keys
from anvil_cli.session import Session

ENVIRONMENT = """\b
Environment (wins over the config file):
  ANVIL_BASE_URL        the server, e.g. https://anvil.example.org
  ANVIL_API_KEY         an API key (anv-...): billing, models, chat, jobs
  ANVIL_MANAGEMENT_KEY  a management key (anvm-...): api-keys create
  ANVIL_PROFILE         the profile to use (like --profile)
  ANVIL_TIMEOUT         seconds to wait for the server (like --timeout)

\b
Shell completion (bash or zsh), e.g. in ~/.bashrc:
  eval "$(_ANVIL_COMPLETE=bash_source anvil)"
"""


def _profile_name(ctx, param, value: str) -> str:
    try:
        return config.check_profile_name(value)
    except click.UsageError as exc:
        raise click.BadParameter(exc.message) from None


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=ENVIRONMENT,
)
@click.option(
    "--profile",
    metavar="NAME",
    envvar="ANVIL_PROFILE",
    default=config.DEFAULT_PROFILE,
    show_default=True,
    callback=_profile_name,
    help="The named profile of the config file to use.",
)
@click.option(
    "--timeout",
    metavar="SECONDS",
    envvar="ANVIL_TIMEOUT",
    type=click.FloatRange(min=0, min_open=True),
    default=60,
    show_default=True,
    help="Seconds to wait for the server (for a chat: between two pieces of the answer).",
)
@click.version_option(__version__, prog_name="anvil")
@click.pass_context
def cli(ctx: click.Context, profile: str, timeout: float) -> None:
    """The command line of an Anvil LLM inference portal: create API keys, see what a key has
    spent and may still spend, list the models, chat, and run jobs.

    Run `anvil configure` once to set the server and your keys."""
    ctx.obj = Session(profile, timeout)


cli.add_command(configure.configure)
cli.add_command(keys.api_keys)
cli.add_command(billing.billing)
cli.add_command(catalog.models)
cli.add_command(catalog.health)
cli.add_command(chat.chat)
cli.add_command(jobs.jobs)


def main(argv: list[str] | None = None) -> None:
    """The console script: exits with 0, 1 for a failure (one line on stderr), 2 for bad
    arguments. Click reports its own errors and ours (ClickException); anything else, such as
    an answer of a shape this version does not know, is one line too, never a traceback."""
    try:
        cli.main(args=argv, prog_name="anvil")
    except Exception as exc:  # the last resort: one line, exit status 1
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        click.echo(
            f"Error: anvil failed unexpectedly ({message}). Is the server an Anvil?", err=True
        )
        sys.exit(1)
