"""A handler's progress reports (`ctx.progress`, worker/progress.py): stored on the leased row, throttled,
never blocking and never failing the job."""

from __future__ import annotations

import asyncpg
import pytest
from structlog.testing import capture_logs

from worker import queue
from worker.errors import InvalidInput
from worker.tasks import TaskContext

WORKER = "progress-test-worker"


async def _claimed(pool: asyncpg.Pool) -> queue.Job:
    await queue.enqueue(pool, queue.NewJob("long_job"))
    jobs = await queue.claim(pool, worker_id=WORKER, task_types=["long_job"], limit=1, lease_s=30)
    assert len(jobs) == 1
    return jobs[0]


async def _progress(pool: asyncpg.Pool, job: queue.Job) -> object:
    return await pool.fetchval("SELECT progress FROM job_queue WHERE id = $1", job.id)


async def test_reports_land_on_the_leased_row_and_the_latest_one_wins(pool: asyncpg.Pool) -> None:
    job = await _claimed(pool)
    ctx = TaskContext(job=job, worker_id=WORKER, resources={"pool": pool})
    for done in range(0, 1001, 10):
        ctx.progress(done, 1000, "fetching")
    await ctx.flush_progress()
    stored = await _progress(pool, job)
    assert isinstance(stored, dict)
    assert (stored["done"], stored["total"], stored["phase"]) == (1000, 1000, "fetching")
    assert ctx._reporter is not None and ctx._reporter.writes <= 2  # 101 reports, throttled to the interval


async def test_a_report_never_lands_on_a_job_whose_attempt_ended(pool: asyncpg.Pool) -> None:
    job = await _claimed(pool)
    ctx = TaskContext(job=job, worker_id=WORKER, resources={"pool": pool})
    released = await queue.release(pool, WORKER, [(job.id, job.attempt, job.started_at)], "shutdown")
    assert released
    ctx.progress(5, 10, "fetching")
    await ctx.flush_progress()
    assert await _progress(pool, job) is None
    # The same job claimed again by the same worker: the old attempt's report still does not land.
    again = await queue.claim(pool, worker_id=WORKER, task_types=["long_job"], limit=1, lease_s=30)
    assert again and again[0].attempt == job.attempt
    stale = TaskContext(job=job, worker_id="another-worker", resources={"pool": pool})
    stale.progress(7, 10, "fetching")
    await stale.flush_progress()
    assert await _progress(pool, job) is None


async def test_a_failed_write_is_logged_and_the_handler_carries_on(database_url: str, pool: asyncpg.Pool) -> None:
    job = await _claimed(pool)
    from worker import db

    closed = await db.create_pool(database_url, min_size=0, max_size=1)
    await closed.close()
    ctx = TaskContext(job=job, worker_id=WORKER, resources={"pool": closed})
    with capture_logs() as logs:
        ctx.progress(1, 2, "fetching")  # returns at once; the write fails in the background
        await ctx.flush_progress()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["job.progress_write_failed"]
    assert await _progress(pool, job) is None


@pytest.mark.parametrize(
    ("done", "total", "phase"),
    [(-1, 10, None), (1, -1, None), (True, 10, None), (1, 10, ""), (1, 10, "x" * 65), (1.5, 10, None)],
)
async def test_a_bad_report_is_refused_with_invalid_input(
    pool: asyncpg.Pool, done: object, total: object, phase: object
) -> None:
    job = await _claimed(pool)
    ctx = TaskContext(job=job, worker_id=WORKER, resources={"pool": pool})
    with pytest.raises(InvalidInput, match="progress: "):
        ctx.progress(done, total, phase)  # type: ignore[arg-type]
    assert await _progress(pool, job) is None
