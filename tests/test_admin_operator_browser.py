"""The operator's view in a real browser (Debian's chromium driven by Playwright): the Workers panel follows
daemons coming and going (kill -9), the charts show the seeded ledger (their data, not their pixels) and work
with none, the schedule strip shows a failed slot in red, and the page loads nothing from outside the daemon.
Screenshots of the overview and of the schedule strip land in test-artifacts/."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.admin import TOKEN, admin_daemon
from tests.support.browser import ARTIFACTS
from tests.support.procs import WorkerProcess, worker_env
from worker.schedules import Schedule

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed"),
]

LEASE_S = 2.0
CHART_SUMS = """() => {
  const c = window.workerCharts;
  if (!c || !c.data) return null;
  const sum = (a) => a.reduce((s, v) => s + (v || 0), 0);
  return {window: c.data.window, points: c.throughput.data[0].length, succeeded: sum(c.throughput.data[1]),
          retried: sum(c.throughput.data[2]), failed: sum(c.throughput.data[3]),
          due: c.depth.data[1].filter((v) => v !== null)};
}"""




async def _open(browser: Browser, base: str, requests: list[str] | None = None) -> Page:
    page = await browser.new_page(viewport={"width": 1360, "height": 1000})
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    await page.goto(f"{base}/admin/login")
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base}/admin/")
    return page


async def _chart_sums(page: Page) -> Any:
    await page.wait_for_function("() => window.workerCharts && window.workerCharts.data !== null")
    return await page.evaluate(CHART_SUMS)


async def test_the_workers_panel_shows_two_daemons_and_drops_one_killed_with_sigkill(
    database_url: str, browser: Browser
) -> None:
    other = WorkerProcess(worker_env(database_url, WORKER_LEASE_S=str(LEASE_S)), name="replica-b")
    try:
        async with admin_daemon(database_url, worker_id="replica-a", lease_s=LEASE_S) as (_, client):
            base = str(client.base_url).rstrip("/")
            await other.wait_event("daemon.starting")
            page = await _open(browser, base)
            rows = page.locator("#workers tbody tr")
            await expect(rows).to_have_count(2, timeout=10_000)
            await expect(page.locator('#workers tr[data-worker-id="replica-b"]')).to_contain_text("noop")
            await expect(page.locator("#workers-count")).to_have_text("2 live")
            other.kill9()
            # Gone after 3 lease periods (6 s) plus a heartbeat interval and a refresh: well within 15 s.
            await expect(page.locator('#workers tr[data-worker-id="replica-b"]')).to_have_count(0, timeout=15_000)
            await expect(rows).to_have_count(1)
            await expect(page.locator('#workers tr[data-worker-id="replica-a"]')).to_be_visible()
            await page.close()
    finally:
        other.cleanup()


async def _seed_ledger(conn: asyncpg.Connection) -> None:
    """Attempts finished in the last two minutes: newer than any rollup the running daemon has made."""
    job = await conn.fetchval("INSERT INTO job_queue (task_type, status) VALUES ('noop', 'succeeded') RETURNING id")
    for outcome, n in (("succeeded", 7), ("retry", 3), ("failed", 2)):
        await conn.execute(
            "INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, duration_ms)"
            " SELECT $1, 1, 'w', now() - make_interval(secs => i * 15), now() - make_interval(secs => i * 15), $2, 9"
            " FROM generate_series(1, $3) AS i", job, outcome, n)


async def test_the_charts_show_the_seeded_ledger_and_work_with_an_empty_one(
    database_url: str, conn: asyncpg.Connection, browser: Browser
) -> None:
    async with admin_daemon(database_url) as (_, client):
        base = str(client.base_url).rstrip("/")
        page = await _open(browser, base)
        empty = await _chart_sums(page)
        assert (empty["succeeded"], empty["retried"], empty["failed"], empty["points"]) == (0, 0, 0, 60)
        await expect(page.locator("#history-status")).to_have_text("No finished attempts in the last hour.")
        await page.close()

        await _seed_ledger(conn)
        await conn.execute(
            "INSERT INTO job_queue (task_type, run_at) VALUES ('noop_paused', now() - interval '1 minute')")
        page = await _open(browser, base)
        sums = await _chart_sums(page)
        assert (sums["succeeded"], sums["retried"], sums["failed"]) == (7, 3, 2)
        await expect(page.locator("#history-status")).to_contain_text("12 finished attempts in the last hour")
        await page.select_option('#history-controls select[name="window"]', "week")
        await page.wait_for_function("() => window.workerCharts.data.window === 'week'")
        week = await page.evaluate(CHART_SUMS)
        assert (week["points"], week["succeeded"], week["retried"], week["failed"]) == (168, 7, 3, 2)
        await page.select_option('#history-controls select[name="window"]', "hour")
        await page.wait_for_function("() => window.workerCharts.data.window === 'hour'")
        assert await page.locator("#chart-throughput canvas").count() == 1
        await expect(page.locator("#unserved")).to_contain_text("noop_paused (1 due)")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "operator-overview.png"), full_page=True)
        await page.close()


async def test_the_schedule_strip_shows_a_failed_slot_in_red(
    database_url: str, conn: asyncpg.Connection, browser: Browser
) -> None:
    s = Schedule("game_platform_sync", "0 * * * *", "game_platform_sync")
    now = await conn.fetchval("SELECT now()")
    latest = s.latest_slot(now - timedelta(minutes=5))
    await conn.execute("INSERT INTO job_queue_schedule (name, cron, task_type, last_slot) VALUES ($1, $2, $3, $4)",
                       s.name, s.cron, s.task_type, latest)
    for hours, status in ((2, "succeeded"), (1, "succeeded"), (0, "failed")):
        slot = latest - timedelta(hours=hours)
        await conn.execute(
            "INSERT INTO job_queue (task_type, status, dedupe_key, started_at, finished_at, last_error, attempts)"
            " VALUES ($1, $2, $3, $4::timestamptz, $4::timestamptz + interval '12 seconds', $5, 1)",
            s.task_type, status, s.dedupe_key(slot), slot, "upstream 503" if status == "failed" else None)
    async with admin_daemon(database_url, schedule_cleanup="") as (_, client):
        base = str(client.base_url).rstrip("/")
        page = await _open(browser, base)
        row = page.locator('#schedule-track tr[data-schedule="game_platform_sync"]')
        failed = row.locator('.slot[data-state="failed"]')
        await expect(failed).to_have_count(1)
        await expect(row.locator('.slot[data-state="succeeded"]')).to_have_count(2)
        await expect(failed).to_have_css("background-color", "rgb(198, 40, 40)")
        await expect(row.locator("td.name")).to_have_css("color", "rgb(198, 40, 40)")
        assert (await failed.get_attribute("title") or "").endswith("failed in 12.0 s: upstream 503")
        assert (await failed.get_attribute("href") or "").startswith("/admin/jobs/")
        await page.wait_for_timeout(2500)  # one refresh from the JSON API re-renders the strip the same way
        await expect(failed).to_have_css("background-color", "rgb(198, 40, 40)")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.locator("#schedule-track").screenshot(path=str(ARTIFACTS / "operator-schedule-strip.png"))
        await page.close()


async def test_the_page_loads_nothing_from_outside_the_daemon(
    database_url: str, conn: asyncpg.Connection, browser: Browser
) -> None:
    await _seed_ledger(conn)
    async with admin_daemon(database_url) as (_, client):
        base = str(client.base_url).rstrip("/")
        requests: list[str] = []
        page = await _open(browser, base, requests)
        await _chart_sums(page)
        await page.wait_for_timeout(2500)
        assert any(u.endswith("/admin/static/vendor/uplot-1.6.32.min.js") for u in requests)
        assert any("/admin/api/history" in u for u in requests)
        outside = [u for u in requests if not u.startswith(base + "/")]
        assert outside == []
        await page.close()
