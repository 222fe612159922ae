"""The admin page in a real browser (Debian's chromium driven by Playwright) against a running daemon and a
real database: sign in, counts, filter, job detail, retry without reloading, pause, no script injection, and a
screenshot of the overview in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, Dialog, expect

from tests.support.admin import admin_daemon, enqueue, status_of, until_status
from tests.support.browser import ARTIFACTS, sign_in_page
from tests.test_admin_escaping import INJECTED

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed"),
]







async def test_on_call_engineer_signs_in_finds_the_failure_and_fixes_it(
    database_url: str, conn: asyncpg.Connection, browser: Browser
) -> None:
    async with admin_daemon(database_url) as (_, client):
        base = str(client.base_url).rstrip("/")
        ok = [await enqueue(conn, "noop") for _ in range(3)]
        flaky = await enqueue(conn, "flaky", {"league": "north"}, max_attempts=1)
        evil = await enqueue(conn, "boom", {"error": INJECTED, "note": INJECTED}, max_attempts=1)
        for job_id in ok:
            await until_status(conn, job_id, "succeeded")
        await until_status(conn, flaky, "failed")
        await until_status(conn, evil, "failed")

        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        dialogs: list[str] = []

        async def on_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        await sign_in_page(page, base)

        # The counts.
        await expect(page.locator('[data-total="succeeded"] .n')).to_have_text("3")
        await expect(page.locator('[data-total="failed"] .n')).to_have_text("2")
        await expect(page.locator("#listener")).to_have_text("listener ok")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "admin-overview.png"), full_page=True)

        # Filter to failed jobs: exactly the two failures are listed.
        await page.select_option('#filters select[name="status"]', "failed")
        await page.click('#filters button[type="submit"]')
        rows = page.locator("#job-list tbody tr")
        await expect(rows).to_have_count(2)
        await expect(page.locator(f'#job-list tr[data-job-id="{flaky}"] .badge')).to_have_text("failed")
        assert "status=failed" in page.url

        # Open the flaky job: its attempt history shows the failed attempt.
        await page.click(f'#job-list tr[data-job-id="{flaky}"] a')
        await expect(page).to_have_url(f"{base}/admin/jobs/{flaky}")
        await expect(page.locator("#runs tbody tr")).to_have_count(1)
        await expect(page.locator("#runs tbody tr").first).to_contain_text("upstream 503")
        await expect(page.locator("#job-status")).to_have_text("failed")

        # Retry it and watch it turn succeeded without a reload (a marker on window survives only without one).
        await page.evaluate("window.__no_reload = 'still here'")
        await page.click('button[data-job-action="retry"]')
        await expect(page.locator("#outcome")).to_contain_text("Retried")
        await expect(page.locator("#job-status")).to_have_text("succeeded", timeout=10_000)
        await expect(page.locator("#runs tbody tr")).to_have_count(2)
        await expect(page.locator("#result-summary .result-errors")).to_contain_text("player not found")
        assert await page.evaluate("window.__no_reload") == "still here"
        await page.screenshot(path=str(ARTIFACTS / "admin-job.png"), full_page=True)
        assert await status_of(conn, flaky) == "succeeded"

        # Pause noop: a new noop job stays pending while other task types still run.
        await page.goto(f"{base}/admin/")
        await page.click('#types tr[data-task-type="noop"] button[data-action="pause"]')
        await expect(page.locator("#outcome")).to_contain_text("Paused noop")
        await expect(page.locator('#types tr[data-task-type="noop"] .badge')).to_have_text("paused")
        held = await enqueue(conn, "noop")
        control = await enqueue(conn, "flaky", max_attempts=3)
        await until_status(conn, control, "succeeded")
        assert await status_of(conn, held) == "pending"
        await page.select_option('#filters select[name="status"]', "pending")
        await page.click('#filters button[type="submit"]')
        await expect(page.locator(f'#job-list tr[data-job-id="{held}"] .badge')).to_have_text("pending")
        await expect(page.locator('[data-total="pending"] .n')).to_have_text("1")

        # The job with <script> in its payload and error: shown as text, nothing injected, no dialog.
        await page.goto(f"{base}/admin/jobs/{evil}")
        await expect(page.locator("#payload")).to_contain_text("<script>alert('xss')</script>")
        await expect(page.locator("#last-error")).to_contain_text("<img src=x onerror=alert(1)>")
        await page.wait_for_timeout(2500)  # one refresh cycle re-renders from the JSON API
        await expect(page.locator("#payload")).to_contain_text("<script>alert('xss')</script>")
        assert await page.locator("script:not([src])").count() == 0
        assert await page.locator("main img").count() == 0
        assert dialogs == []
        await page.close()
