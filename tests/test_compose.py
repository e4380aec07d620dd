"""docker-compose.yml, checked without a Docker engine (none runs in CI): its services, what each
waits for, its health checks, and its commands against the project's own — `make run` and
`make llama` (read from `make -n`, so the Makefile is the one place they are written), the
README's worker and beat lines, the Dockerfiles — so the stack and the one-command start can not
drift apart. .env.example is checked to configure Anvil as it is, apart from its secrets."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from portal.probes import READINESS_PATH

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def make_dry_run(target: str) -> list[list[str]]:
    """The commands ``make TARGET`` runs, each as its words, with the Makefile's defaults."""
    output = subprocess.run(  # noqa: S603 - make on this repository's Makefile
        ["make", "-n", "-s", target, "PY=python"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MAKEFLAGS": ""},
    ).stdout
    script = output.replace("\\\n", " ")
    commands = []
    for piece in re.split(r"&&|;|&(?!&)|\{|\}|\n", script):
        words = shlex.split(piece, posix=True) if piece.strip() else []
        if words:
            commands.append(words)
    return commands


def command_of(commands: list[list[str]], *start: str) -> list[str]:
    """The one command starting with these words (``python -m uvicorn``...)."""
    found = [c for c in commands if c[: len(start)] == list(start)]
    assert len(found) == 1, (start, commands)
    return found[0]


def without_options(words: list[str], *names: str) -> list[str]:
    """The words without these options and their values (where a deployment differs from the
    development start: addresses, ports, processes, log levels, files)."""
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in names:
            skip = True
        else:
            kept.append(word)
    return kept


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def as_module(words: list[str]) -> list[str]:
    """``uvicorn …`` / ``celery …`` as ``python -m uvicorn …``, as the Makefile runs them."""
    if words[0] in ("uvicorn", "celery"):
        return ["python", "-m", *words]
    return words


def test_the_stack_has_its_services(services):
    assert set(services) == {
        "postgres",
        "redis",
        "llama",
        "migrate",
        "catalog",
        "web",
        "worker",
        "beat",
    }


@pytest.mark.parametrize("name", ["web", "worker", "beat", "catalog"])
def test_services_wait_for_migrate_to_complete(services, name):
    assert services[name]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }


@pytest.mark.parametrize("name", ["web", "worker", "beat"])
def test_servers_wait_for_the_catalog_and_for_postgresql_and_redis(services, name):
    depends = services[name]["depends_on"]
    assert depends["catalog"] == {"condition": "service_completed_successfully"}
    assert depends["postgres"] == {"condition": "service_healthy"}
    assert depends["redis"] == {"condition": "service_healthy"}


def test_setup_runs_once_and_in_order(services):
    assert services["migrate"]["restart"] == "no"
    assert services["catalog"]["restart"] == "no"
    assert "migrate" not in services["migrate"]["depends_on"]
    assert "catalog" not in services["migrate"]["depends_on"]
    assert "catalog" not in services["catalog"]["depends_on"]


def test_web_waits_for_the_model_and_is_checked_on_readiness(services):
    web = services["web"]
    assert web["depends_on"]["llama"] == {"condition": "service_healthy"}
    check = " ".join(web["healthcheck"]["test"])
    port = option(web["command"], "--port")
    assert f"http://127.0.0.1:{port}{READINESS_PATH}" in check
    assert web["ports"] == [f"{port}:{port}"]


def test_the_model_service_is_make_llamas_engine_and_is_health_checked(services):
    llama = services["llama"]
    assert llama["build"] == {"context": ".", "dockerfile": "Dockerfile.llama"}
    make_llama = command_of(make_dry_run("llama"), "exec", "python", "-m", "tests.llama")[1:]
    # the same launcher (engine, model, its settings) as `make llama`, on all the container's
    # addresses
    assert (
        without_options(llama["command"], "--host", "--port")[1:]
        == without_options(make_llama, "--port")[1:]
    )
    assert option(llama["command"], "--host") == "0.0.0.0"  # noqa: S104 - inside its container
    port = option(llama["command"], "--port")
    assert f"http://127.0.0.1:{port}/v1/models" in " ".join(llama["healthcheck"]["test"])
    # the image's own command is the service's
    assert dockerfile_cmd("Dockerfile.llama") == llama["command"]


def test_the_catalog_loaded_at_start_points_at_the_model_service(services):
    catalog = services["catalog"]["command"]
    port = option(services["llama"]["command"], "--port")
    assert option(catalog, "--base-url") == f"llama=http://llama:{port}/v1"
    make_llama = command_of(make_dry_run("llama"), "python", "manage.py", "load_catalog")
    assert without_options(catalog, "--base-url") == without_options(make_llama, "--base-url")
    # and the file names the backend that is overridden, with the models of `make llama`
    data = yaml.safe_load((ROOT / option(catalog, "load_catalog")).read_text())
    assert [b["name"] for b in data["backends"]] == ["llama"]
    from tests.llama import CHAT_MODEL, EMBED_MODEL

    assert {m["name"] for m in data["models"]} == {CHAT_MODEL, EMBED_MODEL}


def test_migrate_is_make_runs(services):
    make_run = command_of(make_dry_run("run"), "python", "manage.py", "migrate")
    assert services["migrate"]["command"] == without_options(make_run, "-v")


def test_web_is_make_runs_uvicorn_and_the_images(services):
    web = services["web"]["command"]
    make_run = command_of(make_dry_run("run"), "python", "-m", "uvicorn")
    deployment = ("--host", "--port", "--workers", "--log-level")
    assert without_options(as_module(web), *deployment) == without_options(make_run, *deployment)
    assert dockerfile_cmd("Dockerfile") == web


def test_worker_and_beat_are_the_readmes_and_beat_is_make_runs(services):
    readme = (ROOT / "README.md").read_text()
    for name in ("worker", "beat"):
        command = " ".join(services[name]["command"])
        assert re.search(rf"^{re.escape(command)}\s+#", readme, re.MULTILINE), command
    make_run = command_of(make_dry_run("run"), "python", "-m", "celery")
    deployment = ("--loglevel", "--schedule")
    assert without_options(as_module(services["beat"]["command"]), *deployment) == (
        without_options(make_run, *deployment)
    )


def test_web_keeps_its_metrics_in_a_directory_empty_at_every_start(services):
    """prometheus_client's multiprocess directory must not outlive the server (README,
    "Metrics"): a tmpfs, which every start of the container mounts empty."""
    web = services["web"]
    assert web["environment"]["PROMETHEUS_MULTIPROC_DIR"] in web["tmpfs"]


def test_every_service_built_here_uses_a_dockerfile_that_exists(services):
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            dockerfile = "Dockerfile" if build == "." else build["dockerfile"]
            assert (ROOT / dockerfile).is_file(), name


def dockerfile_cmd(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    [cmd] = [line for line in lines if line.startswith("CMD ")]
    return json.loads(cmd.removeprefix("CMD "))


def test_the_llama_image_is_built_by_make_llama_install():
    text = (ROOT / "Dockerfile.llama").read_text()
    assert "RUN make llama-install" in text
    for needed in ("Makefile", "requirements.txt", "requirements-llama.txt", "tests/llama.py"):
        assert needed in text


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_env_example_configures_the_stack_once_its_secrets_are_set(services):
    """Django starts with .env.example as it is and the compose environment on top, once the
    two secrets it names are set; and those are the only values it asks the operator for."""
    values = env_example()
    placeholders = {name for name, value in values.items() if value.startswith("change-me")}
    assert placeholders == {"SECRET_KEY", "API_KEY_PEPPER"}
    env = {
        "PATH": os.environ["PATH"],
        **values,
        **services["web"]["environment"],
        "SECRET_KEY": "operator-set-secret-key-0123456789-abcdefghij",
        "API_KEY_PEPPER": "operator-set-pepper-0123456789-abcdefghijkl",
    }
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
