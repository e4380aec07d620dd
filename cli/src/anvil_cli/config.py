"""Where the CLI finds its server and keys: the environment first, then a profile of the config
file in the user's config directory (``anvil configure`` writes it, readable by the user only).
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import click

DEFAULT_PROFILE = "default"
# What a profile holds, and the environment variable that wins over each.
ENV = {
    "base_url": "ANVIL_BASE_URL",
    "api_key": "ANVIL_API_KEY",
    "management_key": "ANVIL_MANAGEMENT_KEY",
}
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def config_path() -> Path:
    """``~/.config/anvil/config`` on Linux (``XDG_CONFIG_HOME`` if set), the platform's own
    place elsewhere."""
    return Path(click.get_app_dir("anvil")) / "config"


@dataclass
class Profile:
    name: str
    values: dict[str, str] = field(default_factory=dict)  # field -> value, env applied
    sources: dict[str, str] = field(default_factory=dict)  # field -> "env ..." or "file"

    def get(self, name: str) -> str | None:
        return self.values.get(name)


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.match(name):
        raise click.UsageError(
            f"Bad profile name {name!r}: use letters, digits, '.', '_' and '-' (at most 64)."
        )
    return name


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise click.ClickException(f"Can not read {path}: {' '.join(str(exc).split())}") from None
    return parser


def load(name: str, *, path: Path | None = None, environment: bool = True) -> Profile:
    """The profile ``name`` from the file, each value replaced by its environment variable when
    that is set (and not empty), unless ``environment`` is false."""
    path = path or config_path()
    parser = _read(path)
    profile = Profile(check_profile_name(name))
    if parser.has_section(name):
        for key in ENV:
            value = parser.get(name, key, fallback="").strip()
            if value:
                profile.values[key], profile.sources[key] = value, f"file {path}"
    for key, variable in ENV.items() if environment else ():
        value = os.environ.get(variable, "").strip()
        if value:
            profile.values[key], profile.sources[key] = value, f"environment {variable}"
    return profile


def save(name: str, values: dict[str, str], *, path: Path | None = None) -> Path:
    """Set ``values`` in profile ``name`` of the file, keeping everything else in it. The file
    holds secrets: it is written whole to a new file of mode 0600 in a directory of mode 0700
    and then moved over the old one, so it is never readable by others, not even for a moment.
    """
    path = path or config_path()
    parser = _read(path)
    if not parser.has_section(check_profile_name(name)):
        parser.add_section(name)
    for key, value in values.items():
        parser.set(name, key, value)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.chmod(partial, 0o600)  # in case an old partial file was there with other bits
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            parser.write(file)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def readable_by_others(path: Path) -> bool:
    try:
        return os.name == "posix" and bool(path.stat().st_mode & 0o077)
    except FileNotFoundError:
        return False
