"""What every command does alike: --help, one line on stderr and exit status 1 when the server
is unreachable, silent or refuses the key, and shell completion from Click."""

from __future__ import annotations

import socket

import pytest

from tests.cli.conftest import failed, usage_error

# Every command, with arguments that would work against the test world's server.
COMMANDS = {
    "api-keys create": ["api-keys", "create", "--grant", "alice-grant", "--name", "k"],
    "billing status": ["billing", "status"],
    "models": ["models"],
    "health": ["health"],
    "chat": ["chat", "Hello", "--model", "chat-small"],
    "jobs submit": ["jobs", "submit", "-i", "Hello", "--model", "chat-small"],
    "jobs status": ["jobs", "status", "0123456789abcdef0123456789abcdef"],
    "jobs status --watch": ["jobs", "status", "0123456789abcdef0123456789abcdef", "--watch"],
    "jobs cancel": ["jobs", "cancel", "0123456789abcdef0123456789abcdef"],
}
KEYED = {name: args for name, args in COMMANDS.items() if name != "health"}
HELP = [
    "",
    "configure",
    "api-keys",
    "api-keys create",
    "billing",
    "billing status",
    "models",
    "health",
    "chat",
    "jobs",
    "jobs submit",
    "jobs status",
    "jobs cancel",
]


@pytest.mark.parametrize("command", HELP, ids=lambda command: command or "anvil")
def test_help_works_on_every_command(cli, command):
    command = command.split()
    result = cli(*command, "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: anvil {' '.join(command)}".rstrip())
    assert cli(*command, "-h").stdout == result.stdout


@pytest.mark.parametrize("command", HELP[1:], ids=HELP[1:])
def test_an_unknown_option_is_a_usage_error_on_every_command(cli, command):
    result = cli(*command.split(), "--no-such-option")

    assert usage_error(result) == "Error: No such option '--no-such-option'."
    assert f"Try 'anvil {command} --help' for help." in result.stderr


def test_an_unknown_command_is_a_usage_error(cli):
    assert usage_error(cli("frobnicate")) == "Error: No such command 'frobnicate'."


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_an_unreachable_server_is_one_line(cli, nowhere, args):
    message = failed(
        cli(*args, ANVIL_BASE_URL=nowhere, ANVIL_API_KEY="anv-x", ANVIL_MANAGEMENT_KEY="anvm-x")
    )

    assert message == (
        f"Error: Can not reach the Anvil server at {nowhere}: connection refused. Is the URL right?"
    )


@pytest.fixture
def silent():
    """A loopback server that takes connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_silent_server_times_out_in_one_line(cli, silent, args):
    result = cli(
        "--timeout",
        "0.3",
        *args,
        ANVIL_BASE_URL=silent,
        ANVIL_API_KEY="anv-x",
        ANVIL_MANAGEMENT_KEY="anvm-x",
    )

    message = failed(result)
    assert (
        message == f"Error: No answer from the Anvil server at {silent} within 0.3 s (timed out)."
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("args", KEYED.values(), ids=KEYED.keys())
def test_a_bad_key_is_one_line_with_the_servers_message(anvil, args):
    result = anvil(
        *args,
        ANVIL_API_KEY="anv-0123456789abcdefghij",
        ANVIL_MANAGEMENT_KEY="anvm-0123456789abcdefghij",
    )

    message = failed(result)
    assert message.startswith("Error: ") and message.endswith("(HTTP 401, invalid_api_key)")
    assert result.stdout == ""


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_click_gives_shell_completion(cli, shell):
    script = cli(_ANVIL_COMPLETE=f"{shell}_source")
    assert script.returncode == 0 and "_ANVIL_COMPLETE" in script.stdout

    words = cli(_ANVIL_COMPLETE=f"{shell}_complete", COMP_WORDS="anvil bi", COMP_CWORD="1")
    assert "billing" in words.stdout


def test_version(cli):
    assert cli("--version").stdout == "anvil, version 0.1.0\n"
