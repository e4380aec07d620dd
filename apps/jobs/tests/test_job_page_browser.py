"""The Jobs page in Chromium: a job submitted through the API shows up, its log grows on the
page while it runs, and Cancel stops it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from apps.jobs.tests.conftest import echo
from apps.usage.models import LedgerEntry, Outcome
from tests.waiting import eventually

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("jobs", ["in_process"], indirect=True)
def test_it_shows_the_log_growing_and_cancels(jobs, page, sign_in):
    [job_id] = jobs.submit([echo(400)])
    sign_in("bob")
    page.click("nav >> text=Jobs")
    page.click(f"[data-job='{job_id}'] a")
    log = page.locator("[data-testid=job-log]")
    # Locator assertions, not wait_for_function: Playwright's polling of a page function needs
    # eval, which the portal's Content-Security-Policy refuses.
    expect(log).not_to_have_text("")
    first = log.inner_text()
    expect(log).not_to_have_text(first)  # the log only grows
    assert log.inner_text().startswith(first)
    assert page.locator("[data-testid=job-status]").inner_text() == "running"
    page.click("[data-testid=job-cancel]")
    page.wait_for_selector("[data-testid=job-status]:text-is('cancelled')")
    entry = eventually(lambda: LedgerEntry.objects.filter(api_key=jobs.key).first(), timeout=10)
    assert entry.outcome == Outcome.CANCELLED and 0 < entry.completion_tokens < 400
    assert page.locator("[data-testid=job-credits]").inner_text() == str(entry.credits.normalize())
    jobs.settled()
