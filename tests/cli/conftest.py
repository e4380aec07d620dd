"""The ``anvil`` command as its users run it: the console script installed in this interpreter's
environment, as a subprocess, against Anvil under uvicorn on loopback with the development
backend behind it. Every test gets a home directory of its own, so the config file it writes is
its own, and an environment without the developer's ANVIL_* variables."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import pytest

from apps.keys.services import api_key_create, management_key_create
from devbackend.testing import start_devbackend, stop_devbackend
from tests.servers import free_port
from tests.world import World

ROOT = Path(__file__).resolve().parents[2]
ANVIL = Path(sys.executable).parent / "anvil"


@pytest.fixture(scope="session")
def anvil_command() -> Path:
    """The installed console script, and a check that it runs this checkout's code (the project
    installs it editable: requirements.txt has -e ./cli)."""
    spec = find_spec("anvil_cli")
    source = ROOT / "cli" / "src" / "anvil_cli"
    if not ANVIL.exists() or spec is None or Path(spec.origin).parent != source:
        pytest.fail(f"anvil is not installed from {source}: pip install -e ./cli")
    return ANVIL


@pytest.fixture(scope="session")
def cli_devbackend():
    backend = start_devbackend()
    yield backend.url
    stop_devbackend(backend.process)


@dataclass
class Cli:
    """Runs ``anvil`` with ``env`` (ANVIL_* and the home directory) plus what a call adds."""

    command: Path
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, input: str | None = None, **env: str):
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
        environment.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"))
        environment.update(self.env)
        environment.update(env)
        return subprocess.run(  # noqa: S603 - the project's own console script
            [str(self.command), *args],
            input=input,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    @property
    def config_file(self) -> Path:
        return self.home / ".config" / "anvil" / "config"


@pytest.fixture
def cli(anvil_command, tmp_path) -> Cli:
    """``anvil`` with an empty home and no configuration at all."""
    home = tmp_path / "home"
    home.mkdir()
    return Cli(anvil_command, home)


@dataclass
class Server:
    world: World
    url: str  # the server's root, as a user would configure it
    api_key: object
    api_secret: str
    management_secret: str


@pytest.fixture
def server(world, anvil_server, cli_devbackend) -> Server:
    """Anvil with the world's grant, Bob's API key in it and Bob's management key."""
    world.backend.base_url = f"{cli_devbackend}/v1"
    world.backend.save()
    key, secret = api_key_create(grant=world.grant, owner=world.bob, name="bobs-laptop")
    _management, management_secret = management_key_create(owner=world.bob, name="bobs-script")
    return Server(world, anvil_server.url, key, secret, management_secret)


@pytest.fixture
def anvil(cli, server) -> Cli:
    """``anvil`` configured for ``server`` through the environment, as a script would be."""
    cli.env.update(
        ANVIL_BASE_URL=server.url,
        ANVIL_API_KEY=server.api_secret,
        ANVIL_MANAGEMENT_KEY=server.management_secret,
    )
    return cli


@pytest.fixture
def nowhere() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def failed(result, status: int = 1) -> str:
    """The one line a failed command printed on stderr (and nothing on stdout)."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def usage_error(result) -> str:
    """Bad arguments: Click's usage message on stderr, exit status 2."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Usage: anvil")
    return result.stderr.strip().splitlines()[-1]
