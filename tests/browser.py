"""Browser tests: Debian's Chromium driven by Python Playwright (never `playwright install`).

Use the ``page`` fixture together with ``anvil_server``; ``sign_in`` logs a test-world user in.
Every page the fixture opens is watched for Content-Security-Policy violations: a test that saw
one fails (at teardown), so each browser test also shows the portal works under its policy.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def chromium():
    """One browser per test module: Playwright's sync API keeps an event loop running in this
    thread while it is started, which would break later tests that call asyncio.run()."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium package")
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are
    # plain blocking code and safe here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


# Runs in every document before its own scripts (as an init script, outside the page's policy).
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__anvilCspViolation(
    `${event.effectiveDirective} refused ${event.blockedURI || "(inline)"}`
    + ` in ${event.sourceFile || event.documentURI}:${event.lineNumber}`
  );
});
"""


def watch_csp(context) -> list[str]:
    """Record in the list returned every Content-Security-Policy violation in ``context``'s
    pages: the document's securitypolicyviolation events and Chromium's console reports."""
    violations: list[str] = []

    def on_violation(source, text):
        violations.append(f"{source['page'].url}: {text}")

    context.expose_binding("__anvilCspViolation", on_violation)
    context.add_init_script(CSP_LISTENER)

    def on_console(message):
        if "Content Security Policy" in message.text:
            violations.append(f"console: {message.text}")

    context.on("console", on_console)
    return violations


def assert_no_csp_violations(violations: list[str]) -> None:
    if violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(violations))


@pytest.fixture
def page(chromium, anvil_server):
    downloads = tempfile.mkdtemp(prefix="anvil-downloads-")
    context = chromium.new_context(base_url=anvil_server.url, accept_downloads=True)
    context.set_default_timeout(15_000)
    violations = watch_csp(context)
    page = context.new_page()
    page.csp_violations = violations
    yield page
    context.close()
    shutil.rmtree(downloads, ignore_errors=True)
    assert_no_csp_violations(violations)


@pytest.fixture
def sign_in(page):
    from tests.world import PASSWORD

    def sign_in_as(username: str, password: str = PASSWORD):
        page.goto("/accounts/login/")
        page.fill("input[name=login]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_selector("[data-testid=username]")
        return page

    return sign_in_as
