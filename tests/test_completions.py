"""Buffered completions: what is buffered is written once, whoever flushes."""

import asyncio

import asyncpg

from worker import queue
from worker.hooks import Hooks
from worker.queue import NewJob
from worker.runtime.completions import Completions
from worker.runtime.runner import success


async def test_two_flushes_at_once_write_each_attempt_once(conn: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    # The daemon's flush loop and its last flush at shutdown can meet; neither may fail or write twice.
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(20)])
    jobs = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=20, lease_s=30)
    completions = Completions(pool, "w", Hooks(), flush_ms=0)
    for job in jobs:
        completions.add(success(job, {"n": 1}, 0.0))
    results = await asyncio.gather(completions.flush(), completions.flush(), completions.flush())
    assert results == [True, True, True]
    assert not completions.pending
    assert await conn.fetchval("SELECT count(*) FROM job_runs") == 20
    assert await conn.fetchval("SELECT count(*) FROM job_queue WHERE status = 'succeeded'") == 20
