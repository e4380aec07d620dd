"""What every command runs with: the profile chosen on the command line, and the server and keys
it names."""

from __future__ import annotations

from dataclasses import dataclass

import click

from anvil_cli import config
from anvil_cli.client import Client

NEEDS = {
    "base_url": ("server", "--base-url"),
    "api_key": ("API key", "--api-key"),
    "management_key": ("management key", "--management-key"),
}


@dataclass
class Session:
    """What a command runs with: the profile chosen and the time it waits for the server."""

    profile_name: str
    timeout: float
    _profile: config.Profile | None = None

    @property
    def profile(self) -> config.Profile:
        if self._profile is None:
            self._profile = config.load(self.profile_name)
            path = config.config_path()
            if config.readable_by_others(path):
                click.secho(
                    f"Warning: {path} holds keys and others can read it; chmod 600 it.",
                    err=True,
                    fg="yellow",
                )
        return self._profile

    def needed(self, name: str) -> str:
        value = self.profile.get(name)
        if not value:
            what, option = NEEDS[name]
            raise click.ClickException(
                f"No {what} set for profile '{self.profile_name}': run "
                f"`anvil configure {option} ...` or set {config.ENV[name]}."
            )
        return value

    def client(self) -> Client:
        return Client(self.needed("base_url"), timeout=self.timeout)


pass_session = click.make_pass_decorator(Session)
