"""Start the development backend as a separate process, for tests and benchmarks.

    backend = start_devbackend(latency_ms=0, api_key="secret")
    url, process = backend          # url is "http://127.0.0.1:<port>"; use url + "/v1"
    ...
    stop_devbackend(process)

or ``with devbackend_running(...) as (url, process): ...``. ``devbackend_stats(url)`` and
``devbackend_stats_reset(url)`` read and reset ``/dev/stats``.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx

ROOT = Path(__file__).resolve().parent.parent


class DevBackendProcess(NamedTuple):
    url: str
    process: subprocess.Popen


def _command(port: int | None, options: dict[str, object]) -> list[str]:
    command = [sys.executable, "-m", "devbackend", "--host", "127.0.0.1", "--port", str(port or 0)]
    for name, value in options.items():
        if value is None:
            continue
        if name == "models" and not isinstance(value, str):
            value = ",".join(value)
        command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def _read_url(process: subprocess.Popen, *, deadline: float) -> str:
    """The URL from the server's "listening on" line, read as its lines come (an ended
    process closes its output, which ends the wait at once)."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while selector.select(timeout=max(deadline - time.monotonic(), 0)):
            line = process.stdout.readline().decode()
            if not line:
                break
            if "listening on " in line:
                return line.split("listening on ", 1)[1].split()[0]
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1)  # ended: its exit code
    raise RuntimeError(f"devbackend did not start (exit code {process.poll()})")


def _check_healthy(url: str, *, deadline: float) -> None:
    """One ``/health`` request, no retries: the server listens on its socket before it
    prints its URL, so the request waits in the socket's backlog until it is served (or
    fails at once if the server exits first)."""
    try:
        timeout = max(deadline - time.monotonic(), 0.1)
        answer = httpx.get(f"{url}/health", timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"devbackend at {url} never answered /health ({exc!r})") from None
    if answer.status_code != 200:
        raise RuntimeError(f"devbackend at {url} answered /health with {answer.status_code}")


def start_devbackend(
    port: int | None = None, *, timeout: float = 15.0, log: Path | None = None, **options: object
) -> DevBackendProcess:
    """Start ``python -m devbackend`` on loopback and wait until ``/health`` answers.

    ``options``: latency_ms, tokens_per_second, models (list or comma string), api_key.
    Without ``port`` the server picks a free one itself (no race). With ``log``, its stderr
    (warnings, tracebacks) is appended there instead of going to ours.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    stderr = log.open("ab") if log is not None else None
    try:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            _command(port, options), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr
        )
    finally:
        if stderr is not None:
            stderr.close()
    deadline = time.monotonic() + timeout
    try:
        url = _read_url(process, deadline=deadline)
        _check_healthy(url, deadline=deadline)
    except BaseException:
        stop_devbackend(process)
        raise
    return DevBackendProcess(url=url, process=process)


def stop_devbackend(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@contextlib.contextmanager
def devbackend_running(port: int | None = None, **options: object) -> Iterator[DevBackendProcess]:
    backend = start_devbackend(port, **options)
    try:
        yield backend
    finally:
        stop_devbackend(backend.process)


def devbackend_stats(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/dev/stats", trust_env=False).json()


def devbackend_stats_reset(url: str) -> dict[str, int]:
    return httpx.post(f"{url}/dev/stats/reset", trust_env=False).json()
