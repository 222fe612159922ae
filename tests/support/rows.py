"""Rows: synchronous SQL for tests that run `main()` or Hypothesis (fetch, fetchval, execute), the status of a
job, and job fixtures in given states."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from worker import db


async def _run(url: str, query: str, args: tuple[Any, ...], how: str) -> Any:
    conn = await db.connect(url)
    try:
        return await getattr(conn, how)(query, *args)
    finally:
        await conn.close()


def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run a query from synchronous test code (the CLI tests run `main()`, which owns its event loop)."""
    return asyncio.run(_run(url, query, args, "fetch"))  # type: ignore[no-any-return]


def fetchval(url: str, query: str, *args: Any) -> Any:
    return asyncio.run(_run(url, query, args, "fetchval"))


def execute(url: str, query: str, *args: Any) -> Any:
    return asyncio.run(_run(url, query, args, "execute"))


async def status_of(conn: asyncpg.Connection, job_id: uuid.UUID | str) -> str | None:
    """The status of one job (None: no such row): the one helper the tests use for it."""
    value = await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", uuid.UUID(str(job_id)))
    return None if value is None else str(value)


INSERT_JOB = """
INSERT INTO job_queue (id, task_type, payload, status, attempts, max_attempts, last_error, result, locked_by,
                       locked_until, started_at, finished_at, created_at, run_at, dedupe_key)
VALUES (job_queue_uuidv7_at(now() - make_interval(secs => $8)), $1, $2, $3, $4, $5, $6, $7,
        CASE WHEN $3 = 'running' THEN 'w-test' END,
        CASE WHEN $3 = 'running' THEN now() + interval '1 minute' END,
        CASE WHEN $4 > 0 THEN now() - make_interval(secs => $8) END,
        CASE WHEN $3 IN ('succeeded', 'failed', 'cancelled') THEN now() - make_interval(secs => $8) END,
        now() - make_interval(secs => $8), now() - make_interval(secs => $8), $9)
RETURNING id
"""

INSERT_RUN = """
INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, error, duration_ms)
VALUES ($1, $2, 'w-test', now() - make_interval(secs => $4), now() - make_interval(secs => $4), $3, $5, 5)
"""


async def make_job(
    conn: asyncpg.Connection,
    *,
    task_type: str = "noop",
    status: str = "pending",
    age_s: float = 0.0,
    payload: dict[str, Any] | None = None,
    error: str | None = None,
    result: Any = None,
    dedupe_key: str | None = None,
) -> uuid.UUID:
    """A job in `status`, created/finished `age_s` ago (its id carrying that time, as an enqueue's would), with
    one ledger row per attempt when not pending."""
    attempts = 0 if status == "pending" else 1
    job_id: uuid.UUID = await conn.fetchval(
        INSERT_JOB, task_type, payload or {}, status, attempts, 5, error, result, float(age_s), dedupe_key
    )
    if status in ("succeeded", "failed", "cancelled"):
        outcome = {"succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"}[status]
        await conn.execute(INSERT_RUN, job_id, 1, outcome, float(age_s), error)
    return job_id


def make_job_sync(url: str, **kwargs: Any) -> uuid.UUID:
    async def go() -> uuid.UUID:
        conn = await db.connect(url)
        try:
            return await make_job(conn, **kwargs)
        finally:
            await conn.close()

    return asyncio.run(go())


def count_jobs(url: str) -> int:
    return int(fetchval(url, "SELECT count(*) FROM job_queue"))


def snapshot(url: str) -> list[tuple[Any, ...]]:
    """Every job's state and the ledger size: compared before and after a rejected command."""
    rows = fetch(url, "SELECT id, status, attempts, run_at, updated_at FROM job_queue ORDER BY id")
    runs = fetchval(url, "SELECT count(*) FROM job_runs")
    pauses = fetchval(url, "SELECT count(*) FROM job_queue_pause")
    archived = fetchval(url, "SELECT count(*) FROM job_queue_archive")
    return [tuple(r) for r in rows] + [("runs", runs, pauses, archived)]
