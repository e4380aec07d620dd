"""A newcomer's first request, from the portal alone: generate a key, copy the Python example
from the page, run it against the live server, and see the key's Last used and request count
change once the minute's rollup has run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from apps.usage.tasks import roll_up_ledger
from tests.waiting import eventually
from tests.world import wait_for_settlements

pytestmark = pytest.mark.browser


def test_it_runs_the_python_example_and_the_key_shows_its_use(
    world, page, sign_in, devbackend, anvil_server
):
    sign_in("bob")
    page.goto("/keys/new/")
    page.fill("input[name=name]", "first-key")
    page.click("button:text-is('Generate')")
    secret = page.input_value("[data-testid=secret]")
    assert page.input_value("[data-testid=base-url]") == f"{anvil_server.url}/api/v1"
    example = page.inner_text("[data-testid=example-python]")
    assert 'model="chat-small"' in example

    run = subprocess.run(  # noqa: S603 - our own interpreter, the page's example
        [sys.executable, "-c", example],
        env={**os.environ, "ANVIL_API_KEY": secret},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()

    page.click("text=Done")
    page.click("tr[data-key=first-key] >> text=first-key")
    assert page.inner_text("[data-testid=last-used]") == "never"
    assert page.inner_text("[data-testid=request-count]") == "0"

    wait_for_settlements()
    roll_up_ledger()  # the beat runs it every minute

    def shows_the_use():
        page.reload()
        assert page.inner_text("[data-testid=request-count]") == "1"
        assert page.inner_text("[data-testid=last-used]") != "never"

    eventually(shows_the_use, timeout=10)
