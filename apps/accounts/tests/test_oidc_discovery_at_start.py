"""The provider's discovery document is read when a server process starts (uvicorn, runserver)
and kept; a provider that is down then is logged, the process starts all the same, and the
first sign-in reads the document instead. Management commands, and processes without OpenID
Connect, reach no one."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.accounts.provider import read_at_start
from tests.idp import CLIENT_ID, CLIENT_SECRET
from tests.oidc_mock import WELL_KNOWN, MockProvider
from tests.servers import free_port, process_env, start_anvil_processes, stop_anvil_processes
from tests.signing_in import Browser, configure_oidc

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
COULD_NOT_READ = "the provider's discovery document could not be read at start"


def oidc_env(discovery_url: str) -> dict:
    return {
        "OIDC_RP_CLIENT_ID": CLIENT_ID,
        "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_OP_DISCOVERY_URL": discovery_url,
        "LOG_LEVEL": "INFO",
    }


def test_it_reads_the_document_at_start_and_keeps_it(oidc, browser, caplog):
    caplog.set_level(logging.INFO, logger="apps.accounts.provider")
    read_at_start()
    assert oidc.requests == [("GET", WELL_KNOWN)]
    assert f"read the discovery document of {oidc.issuer}" in caplog.text
    oidc.add_account("ada")
    assert browser.sign_in("ada").url == "http://testserver/models/"
    assert oidc.discovery_reads == 1  # the sign-in found it read


def test_it_starts_with_the_provider_down_and_reads_at_the_first_sign_in(oidc, client, caplog):
    port = oidc.server.server_port
    oidc.stop()
    read_at_start()
    assert COULD_NOT_READ in caplog.text and "Connection refused" in caplog.text

    again = MockProvider(port=port)  # the same provider, up again
    try:
        again.add_account("ada")
        browser = Browser(client, again)
        browser.http.trust_env = False
        assert browser.sign_in("ada").url == "http://testserver/models/"
        assert again.discovery_reads == 1
    finally:
        again.stop()
        browser.http.close()


def test_it_reads_nothing_without_openid_connect(settings, idp):
    configure_oidc(settings, idp, OIDC_ENABLED=False)
    read_at_start()
    assert idp.requests == []


@pytest.mark.django_db(transaction=True)
def test_uvicorn_reads_it_as_it_starts(idp, tmp_path):
    server = start_anvil_processes(
        workers=1, log_path=tmp_path / "anvil.log", extra_env=oidc_env(idp.discovery_url)
    )
    try:
        assert idp.requests == [("GET", WELL_KNOWN)]  # before any request to Anvil but health
    finally:
        stop_anvil_processes(server)


@pytest.mark.django_db(transaction=True)
def test_uvicorn_starts_all_the_same_with_the_provider_down(tmp_path):
    url = f"http://127.0.0.1:{free_port()}{WELL_KNOWN}"
    log = tmp_path / "anvil.log"
    server = start_anvil_processes(workers=1, log_path=log, extra_env=oidc_env(url))
    try:
        assert COULD_NOT_READ in log.read_text()  # and /api/health answered: it runs
    finally:
        stop_anvil_processes(server)


def test_runserver_reads_it_as_it_starts(idp, tmp_path):
    log = tmp_path / "runserver.log"
    command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{free_port()}"]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and the project's manage.py
        command,
        cwd=ROOT,
        env=process_env(oidc_env(idp.discovery_url)),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not idp.requests:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert idp.requests == [("GET", WELL_KNOWN)]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_management_command_reads_nothing(idp):
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=process_env(oidc_env(idp.discovery_url)),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert idp.requests == []
