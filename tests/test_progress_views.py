"""A running job's progress where people look: `worker jobs show` / `list`, the admin API and pages (a bar that
moves without reloading, in a real browser), and /metrics."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from playwright.async_api import Browser

from tests.support.admin import admin_daemon, enqueue, sign_in, until_status
from tests.support.browser import sign_in_page
from tests.support.game_platform import API_KEY, Platform, seed_competitors
from tests.test_game_platform_scale import big_platform  # noqa: F401  (the fixture)
from worker import db, queue
from worker.cli.main import main
from worker.tasks import TaskContext

OTHER_WORKER = "elsewhere"


async def _running_with_progress(database_url: str, done: int, total: int) -> str:
    """A `long_job` claimed by another worker, which reported done/total."""
    pool = await db.create_pool(database_url, max_size=2)
    try:
        await queue.enqueue(pool, queue.NewJob("long_job"))
        [job] = await queue.claim(pool, worker_id=OTHER_WORKER, task_types=["long_job"], limit=1, lease_s=300)
        ctx = TaskContext(job=job, worker_id=OTHER_WORKER, resources={"pool": pool})
        ctx.progress(done, total, "fetching")
        await ctx.flush_progress()
        return str(job.id)
    finally:
        await pool.close()


def test_jobs_show_and_list_print_the_progress(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = asyncio.run(_running_with_progress(database_url, 420, 1000))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("WORKER_LOG_FORMAT", "json")

    def run(*argv: str) -> str:
        capsys.readouterr()
        assert main(list(argv)) == 0
        return capsys.readouterr().out

    assert re.search(r"^progress\s+420/1000 \(42%\) fetching$", run("jobs", "show", job_id), re.MULTILINE)
    listed = run("jobs", "list")
    assert "PROGRESS" in listed.splitlines()[0] and "420/1000 (42%) fetching" in listed
    assert '"done": 420' in run("jobs", "show", job_id, "--json")


async def test_the_admin_api_pages_and_metrics_carry_the_progress(database_url: str) -> None:
    job_id = await _running_with_progress(database_url, 420, 1000)
    async with admin_daemon(database_url) as (_, client):
        await sign_in(client)
        listed = (await client.get("/admin/api/jobs")).json()["jobs"]
        assert [j["progress"]["done"] for j in listed if j["id"] == job_id] == [420]
        detail = (await client.get(f"/admin/api/jobs/{job_id}")).json()
        assert (detail["progress"]["done"], detail["progress"]["total"]) == (420, 1000)
        page = (await client.get(f"/admin/jobs/{job_id}")).text
        assert '<progress max="1000" value="420"></progress>' in page
        overview = (await client.get("/admin/")).text
        assert '<progress max="1000" value="420"></progress>' in overview
        metrics = (await client.get("/metrics")).text
        assert 'worker_job_progress_done{task_type="long_job"} 420.0' in metrics
        assert 'worker_job_progress_total{task_type="long_job"} 1000.0' in metrics


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed")
async def test_the_bar_of_a_running_sync_advances_without_reloading(
    big_platform: Platform, database_url: str, conn: asyncpg.Connection, browser: Browser  # noqa: F811
) -> None:
    pool = await db.create_pool(database_url, max_size=2)
    try:
        await seed_competitors(pool, 3000)
    finally:
        await pool.close()
    big_platform.sim.latency_s = 0.05
    overrides: dict[str, Any] = {
        "game_platform_base_url": big_platform.url, "game_platform_api_key": API_KEY,
        "game_platform_rps": 4.0, "game_platform_concurrency": 2,
    }
    # The game platform's settings are the task's own: read from the environment, as in a deployment.
    async with admin_daemon(database_url, **big_platform.use(overrides)) as (_, client):
        base = str(client.base_url).rstrip("/")
        job_id = await enqueue(conn, "game_platform_sync", {})
        await until_status(conn, job_id, "running")
        page = await browser.new_page()
        await sign_in_page(page, base)
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))

        async def bar_value(selector: str) -> float:
            with anyio.fail_after(30):
                while True:
                    bar = page.locator(selector)
                    if await bar.count():
                        value = await bar.get_attribute("value")
                        if value and float(value) > 0:
                            return float(value)
                    await anyio.sleep(0.2)

        row_bar = f'#job-list tr[data-job-id="{job_id}"] progress'
        first = await bar_value(row_bar)
        with anyio.fail_after(30):
            while await bar_value(row_bar) <= first:
                await anyio.sleep(0.2)
        assert navigations == []  # it moved in place: no reload

        await page.goto(f"{base}/admin/jobs/{job_id}")
        first = await bar_value(".job-progress progress")
        with anyio.fail_after(30):
            while (await bar_value(".job-progress progress")) <= first:
                await anyio.sleep(0.2)
        assert await page.locator(".job-progress progress").get_attribute("max") == "3000"
        await until_status(conn, job_id, "succeeded", timeout_s=60)
