"""4 worker processes draining 5,000 jobs (succeeding, retrying then failing, failing for good, some slow), one of
them killed with -9 half way and replaced: every job ends in its expected final state, none is lost, and no two
attempts of one job overlap in time (from the ledger)."""

from __future__ import annotations

import time

import asyncpg
import pytest

from tests.support.daemon import wait_for
from tests.support.procs import WorkerProcess, worker_env, workers

# More than four claims of AHEAD_MAX_JOBS can hold (worker/runtime/claim_ahead.py: a daemon running short jobs
# claims up to 1,000 ahead of its 10 slots): with 2,000 jobs the first two or three workers to claim could take
# all of them, and a worker that never ran a job would leave the four-way race this test is about untested.
JOBS = 5000

# kind by i % 10: 0-5 succeed at once, 6 sleeps 0.3 s then succeeds, 7-8 fail and retry (max_attempts 2),
# 9 fails for good on its first attempt.
INSERT = """
INSERT INTO job_queue (task_type, payload, max_attempts, dedupe_key)
SELECT 'noop',
       CASE WHEN i % 10 <= 5 THEN '{}'::jsonb
            WHEN i % 10 = 6 THEN jsonb_build_object('sleep_s', 0.3)
            WHEN i % 10 <= 8 THEN jsonb_build_object('fail', 'x')
            ELSE jsonb_build_object('fail', 'no', 'permanent', true) END,
       CASE WHEN i % 10 IN (7, 8) THEN 2 ELSE 3 END,
       'drain-' || i
FROM generate_series(0, $1 - 1) AS i
"""

WRONG_FINAL_STATE = """
SELECT j.id, j.payload, j.status, j.attempts,
       array_agg(r.outcome ORDER BY r.attempt, r.id) FILTER (WHERE r.id IS NOT NULL) AS outcomes
FROM job_queue AS j LEFT JOIN job_runs AS r ON r.job_id = j.id
GROUP BY j.id
HAVING NOT (
    CASE WHEN j.payload ? 'fail' THEN j.status = 'failed' ELSE j.status = 'succeeded' END
    -- exactly one successful attempt for a succeeded job, none for a failed one
    AND count(*) FILTER (WHERE r.outcome = 'succeeded') = (j.status = 'succeeded')::int
    -- one ledger row per attempt, numbered 1..attempts, the last one final
    AND count(r.id) = j.attempts
    AND array_agg(r.attempt ORDER BY r.attempt) = ARRAY(SELECT generate_series(1, j.attempts))
    AND (array_agg(r.outcome ORDER BY r.attempt DESC))[1] IN ('succeeded', 'failed', 'abandoned')
    -- a retrying job used both its attempts; a permanent failure stopped at once unless an attempt was abandoned
    AND (NOT (j.payload ? 'fail') OR j.payload ? 'permanent' OR j.attempts = 2)
    AND (NOT (j.payload ? 'permanent') OR j.attempts = 1 + count(*) FILTER (WHERE r.outcome = 'abandoned'))
)
LIMIT 5
"""

OVERLAPS = """
SELECT count(*) FROM job_runs AS a JOIN job_runs AS b ON a.job_id = b.job_id AND a.id < b.id
WHERE tstzrange(a.started_at, a.finished_at, '[)') && tstzrange(b.started_at, b.finished_at, '[)')
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_four_workers_drain_5000_jobs_each_to_its_final_state_with_no_overlapping_attempts(
    database_url: str, conn: asyncpg.Connection
) -> None:
    def env(i: int) -> dict[str, str]:
        return worker_env(database_url, WORKER_CONCURRENCY="10")

    started = time.monotonic()
    with workers(env, 4, prefix="drain") as procs:
        for p in procs:
            await p.wait_event("listener.listening")
        await conn.execute(INSERT, JOBS)

        async def half_done() -> bool:
            return await conn.fetchval("SELECT count(*) FROM job_runs") >= JOBS // 2

        await wait_for(half_done, timeout_s=60)
        victim = procs[0]
        victim.kill9()
        await victim.wait_exit()
        replacement = WorkerProcess(env(4), name="drain4")
        procs.append(replacement)

        async def drained() -> bool:
            return not await conn.fetchval(
                "SELECT count(*) FROM job_queue WHERE status NOT IN ('succeeded', 'failed')"
            )

        await wait_for(drained, timeout_s=60, interval_s=0.2)
        took = time.monotonic() - started
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == JOBS
    assert await conn.fetchval("SELECT count(DISTINCT dedupe_key) FROM job_queue") == JOBS
    wrong = await conn.fetch(WRONG_FINAL_STATE)
    assert not wrong, [dict(r) for r in wrong]
    overlaps = await conn.fetchval(OVERLAPS)
    assert overlaps == 0
    by_worker = dict(await conn.fetch("SELECT worker_id, count(*) FROM job_runs GROUP BY 1 ORDER BY 1"))
    assert {"drain0", "drain1", "drain2", "drain3"} <= set(by_worker), by_worker
    counts = dict(await conn.fetch("SELECT status, count(*) FROM job_queue GROUP BY 1"))
    assert counts == {"succeeded": JOBS * 7 // 10, "failed": JOBS * 3 // 10}
    abandoned = await conn.fetchval("SELECT count(*) FROM job_runs WHERE outcome = 'abandoned'")
    attempts = await conn.fetchval("SELECT count(*) FROM job_runs")
    duplicates = await conn.fetchval(
        "SELECT count(*) FROM (SELECT job_id FROM job_runs WHERE outcome = 'succeeded' GROUP BY 1 "
        "HAVING count(*) > 1) AS d"
    )
    assert duplicates == 0
    print(
        f"\n4 workers (one killed -9 and replaced): {JOBS} jobs, {attempts} attempts "
        f"({abandoned} abandoned by the killed worker), {counts}, overlapping attempts {overlaps}, "
        f"duplicate successes {duplicates}, {took:.1f}s; attempts per worker {by_worker}"
    )
