"""Retention cleanup in bounded batches, and the archive (jobs and their attempt history)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from tests.support.daemon import make_settings, running_daemon, wait_for
from tests.support.rows import make_job
from worker import operations, queue
from worker.builtin import default_registry
from worker.errors import JobNotFound, JobStateConflict

DAY = 86400.0


async def test_cleanup_deletes_in_batches_and_respects_both_retentions(conn: asyncpg.Connection) -> None:
    old_ok = [await make_job(conn, status="succeeded", age_s=20 * DAY) for _ in range(25)]
    young_ok = [await make_job(conn, status="succeeded", age_s=2 * DAY) for _ in range(3)]
    kept_failed = [await make_job(conn, status="failed", age_s=20 * DAY) for _ in range(3)]
    old_failed = [await make_job(conn, status="failed", age_s=90 * DAY),
                  await make_job(conn, status="cancelled", age_s=90 * DAY)]
    live = [await make_job(conn, status="pending", age_s=90 * DAY),
            await make_job(conn, status="running", age_s=90 * DAY)]
    result = await operations.cleanup(
        conn, succeeded_older_than=timedelta(days=14), failed_older_than=timedelta(days=60), batch_size=10
    )
    assert result == operations.CleanupResult(jobs=27, succeeded=25, runs=27, batches=3)
    remaining = {r["id"] for r in await conn.fetch("SELECT id FROM job_queue")}
    assert remaining == set(young_ok + kept_failed + live)
    assert not remaining & set(old_ok + old_failed)
    orphans = await conn.fetchval("SELECT count(*) FROM job_runs r WHERE NOT EXISTS "
                                  "(SELECT 1 FROM job_queue j WHERE j.id = r.job_id)")
    assert orphans == 0 and await conn.fetchval("SELECT count(*) FROM job_runs") == 6


async def test_cleanup_stops_after_max_batches(conn: asyncpg.Connection) -> None:
    for _ in range(7):
        await make_job(conn, status="succeeded", age_s=20 * DAY)
    result = await operations.cleanup(conn, succeeded_older_than=timedelta(days=14),
                                    failed_older_than=timedelta(days=60), batch_size=3, max_batches=2)
    assert (result.jobs, result.batches) == (6, 2)
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 1


async def test_the_cleanup_task_uses_the_retention_settings(database_url: str, conn: asyncpg.Connection) -> None:
    expired = await make_job(conn, status="succeeded", age_s=3 * DAY)
    kept = await make_job(conn, status="failed", age_s=3 * DAY)
    settings = make_settings(database_url, retention_succeeded_days=1, retention_failed_days=5,
                             cleanup_batch_size=2)
    async with running_daemon(settings, default_registry(settings)):
        job = (await queue.enqueue(conn, queue.NewJob("cleanup"))).id

        async def done() -> bool:
            return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job) == "succeeded"

        await wait_for(done)
    result = await conn.fetchval("SELECT result FROM job_queue WHERE id = $1", job)
    assert result == {"jobs": 1, "succeeded": 1, "runs": 1, "batches": 1}
    ids = {r["id"] for r in await conn.fetch("SELECT id FROM job_queue")}
    assert expired not in ids and kept in ids


async def test_archive_moves_the_job_and_its_whole_history(conn: asyncpg.Connection) -> None:
    job = await make_job(conn, status="failed", age_s=DAY, payload={"x": 1}, error="boom")
    await conn.execute("INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, "
                       "error, duration_ms) VALUES ($1, 2, 'w', now(), now(), 'failed', 'boom2', 3)", job)
    before = await conn.fetchrow("SELECT * FROM job_queue WHERE id = $1", job)
    assert await operations.archive_ids(conn, [job]) == (1, 2)
    assert await conn.fetchval("SELECT count(*) FROM job_queue WHERE id = $1", job) == 0
    assert await conn.fetchval("SELECT count(*) FROM job_runs WHERE job_id = $1", job) == 0
    archived = await conn.fetchrow("SELECT * FROM job_queue_archive WHERE id = $1", job)
    for key in ("task_type", "payload", "status", "attempts", "last_error", "created_at", "finished_at"):
        assert archived[key] == before[key]
    errors = [r["error"] for r in await conn.fetch(
        "SELECT error FROM job_runs_archive WHERE job_id = $1 ORDER BY attempt", job)]
    assert errors == ["boom", "boom2"]


async def test_archive_refuses_unknown_or_unfinished_jobs_and_moves_nothing(conn: asyncpg.Connection) -> None:
    done = await make_job(conn, status="succeeded")
    running = await make_job(conn, status="running")
    with pytest.raises(JobStateConflict, match="it is running"):
        await operations.archive_ids(conn, [done, running])
    with pytest.raises(JobNotFound):
        await operations.archive_ids(conn, [done, queue.parse_job_id("00000000-0000-0000-0000-000000000001")])
    assert await conn.fetchval("SELECT count(*) FROM job_queue_archive") == 0
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 2


async def test_archive_by_age_works_in_batches_and_keeps_recent_jobs(conn: asyncpg.Connection) -> None:
    old = [await make_job(conn, status="succeeded", age_s=40 * DAY) for _ in range(5)]
    recent = await make_job(conn, status="succeeded", age_s=DAY)
    other = await make_job(conn, task_type="cleanup", status="succeeded", age_s=40 * DAY)
    moved = await operations.archive_filtered(conn, older_than=timedelta(days=30), task_type="noop", batch_size=2)
    assert moved == (5, 5)
    archived = {r["id"] for r in await conn.fetch("SELECT id FROM job_queue_archive")}
    assert archived == set(old)
    assert {r["id"] for r in await conn.fetch("SELECT id FROM job_queue")} == {recent, other}
