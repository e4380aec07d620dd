"""Member limits and consumption in a real browser: the grant admin changes one member's
limit, then the collective limit; the member sees it on their key page; tables download."""

from __future__ import annotations

import csv
import io

import pytest

from apps.keys.services import api_key_create
from apps.usage import ledger
from tests.browser import assert_no_csp_violations, watch_csp
from tests.world import PASSWORD

pytestmark = pytest.mark.browser

MEMBER_LIMIT = "tr[data-row=member_monthly] td:nth-child(2)"


def spend(key, model) -> None:
    """One request of 1000 prompt and 1000 completion tokens, through the accounting."""
    plan = ledger.Plan(
        api_key_id=key.pk, grant_id=key.grant_id, user_id=key.owner_id, model=model,
        prompt_tokens=1000, max_completion_tokens=1000,
    )  # fmt: skip
    ledger.settle(ledger.place(plan), ledger.Usage(1000, 1000, latency_ms=5))


def set_limit(page, opener: str, value: str) -> None:
    page.click(opener)
    page.fill("input[name=monthly_limit]", value)
    page.click("[data-testid=save-limit]")
    page.wait_for_selector(".message.success")


def members(page) -> dict[str, str]:
    """Member → monthly limit, as the grant page's Members table shows it."""
    rows = page.locator("[data-testid=table-members] tbody tr")
    return {
        rows.nth(n).locator("td").nth(0).inner_text(): rows.nth(n).locator("td").nth(4).inner_text()
        for n in range(rows.count())
    }


def download_csv(page, testid: str) -> list[list[str]]:
    with page.expect_download() as info:
        page.click(f"[data-testid={testid}]")
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8") as file:
        return list(csv.reader(io.StringIO(file.read())))


def test_it_changes_member_limits_and_the_member_sees_them(world, page, sign_in, chromium,
                                                           anvil_server):  # fmt: skip
    key, _ = api_key_create(grant=world.grant, owner=world.bob, name="bob-key")
    spend(key, world.chat_model)  # 0.002 credits
    bob_context = chromium.new_context(base_url=anvil_server.url, accept_downloads=True)
    bob_violations = watch_csp(bob_context)
    try:
        check_limits_and_downloads(page, sign_in, bob_context.new_page())
    finally:
        bob_context.close()
    assert_no_csp_violations(bob_violations)


def check_limits_and_downloads(page, sign_in, bob) -> None:
    # Bob, in his own browser context, looks at his key: no member limit yet.
    bob.goto("/accounts/login/")
    bob.fill("input[name=login]", "bob")
    bob.fill("input[name=password]", PASSWORD)
    bob.click("button[type=submit]")
    bob.click("nav >> text=API keys")
    bob.click("text=bob-key")
    assert bob.inner_text(MEMBER_LIMIT) == "no limit"

    # Alice changes Bob's limit alone, then the limit of all members.
    sign_in("alice")
    page.click("nav >> text=Grants")
    page.click("[data-grant=alice-grant]")
    set_limit(page, "[data-testid=change-limit-bob]", "15")
    assert "bob's monthly limit is now 15 credits." in page.inner_text(".messages")
    assert members(page) == {"alice": "no limit", "bob": "15"}
    bob.reload()
    assert bob.inner_text(MEMBER_LIMIT) == "15"

    set_limit(page, "[data-testid=set-collective-limit]", "7.5")
    assert members(page) == {"alice": "7.5", "bob": "7.5"}
    bob.reload()
    assert bob.inner_text(MEMBER_LIMIT) == "7.5"
    assert bob.inner_text("[data-testid=limited-by]").startswith("Member monthly limit")
    assert bob.inner_text("[data-testid=remaining]") == "7.498"

    # The history keeps both changes; the charts are drawn by the vendored Chart.js.
    history = page.locator("[data-testid=table-limit-changes] tbody tr")
    assert history.count() == 3  # Bob alone, then Alice and Bob together
    drawn = "Chart.getChart(document.querySelector('canvas[data-chart=chart-data-members]'))"
    assert page.evaluate(f"{drawn}.data.datasets[0].data") == [0, 0.002]

    # Tables download as CSV with the page's numbers.
    rows = download_csv(page, "csv-members")
    assert [row[0] for row in rows] == ["Member", "alice", "bob"]
    assert [row[4] for row in rows[1:]] == ["7.5", "7.5"]
    assert [row[2] for row in rows[1:]] == ["0", "0.002"]
    limits = download_csv(bob, "csv-limits")
    member_row = next(row for row in limits if row[0].startswith("Member monthly limit"))
    assert member_row[1] == "7.5"
