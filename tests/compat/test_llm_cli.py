"""Simon Willison's ``llm`` command against Anvil, as its documentation says to add an
OpenAI-compatible server: a model in ``extra-openai-models.yaml`` and its key stored with
``llm keys set``. The installed console script runs as a subprocess with its own user directory
(LLM_USER_PATH), no plugins and no proxy but a dead one (tests/compat/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.compat.offline import offline_env

pytestmark = pytest.mark.django_db  # the database exists; the world is the module's (conftest)

LLM = Path(sys.executable).parent / "llm"


@pytest.fixture(scope="module")
def llm(anvil, tmp_path_factory):
    """``llm(*args)`` with a user directory holding ``anvil-chat`` (Anvil's ``chat-small``) and
    the key set under the name ``anvil``."""
    home = tmp_path_factory.mktemp("llm")
    models = [
        {
            "model_id": "anvil-chat",
            "model_name": "chat-small",
            "api_base": anvil.url,
            "api_key_name": "anvil",
        }
    ]
    (home / "extra-openai-models.yaml").write_text(yaml.safe_dump(models))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
    env.update(offline_env(), LLM_USER_PATH=str(home), LLM_LOAD_PLUGINS="", NO_COLOR="1")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(  # noqa: S603 - the llm package's own console script
            [str(LLM), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    stored = run("keys", "set", "anvil", "--value", anvil.secret)
    assert stored.returncode == 0, stored.stderr
    return run


def test_it_lists_the_model_from_the_yaml_file(llm):
    listed = llm("models", "list")
    assert listed.returncode == 0, listed.stderr
    assert "OpenAI Chat: anvil-chat" in listed.stdout.splitlines()


def test_a_prompt_prints_the_streamed_answer_and_the_usage(llm):
    answer = llm(
        "-m", "anvil-chat", "-o", "max_tokens", "3", "--usage", "--no-log", "ECHO: Hello from Anvil"
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout == "Hello from Anvil\n"
    assert "Token usage: 10 input, 3 output" in answer.stderr


def test_a_prompt_without_streaming_prints_the_whole_answer(llm):
    answer = llm("-m", "anvil-chat", "--no-stream", "--no-log", "ECHO: Zażółć gęślą jaźń")
    assert answer.returncode == 0, answer.stderr
    words = answer.stdout.split()
    assert words[:3] == ["Zażółć", "gęślą", "jaźń"] and len(words) == 16


def test_a_wrong_key_is_reported_as_anvils_refusal(llm):
    answer = llm("-m", "anvil-chat", "--key", "anv-not-a-real-key", "--no-log", "Hello")
    assert answer.returncode == 1
    assert answer.stdout == ""
    assert answer.stderr.startswith("Error: Error code: 401 - "), answer.stderr
