"""The task's own policy governs how its jobs are run and enqueued: the daemon retries a failing job after the
task's backoff (not the global one), and `worker enqueue` gives a job its task's priority unless told otherwise."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
from pydantic import BaseModel

from tests.support.daemon import make_settings, running_daemon, wait_for
from tests.support.procs import worker_env
from worker import queue
from worker.tasks import Registry, Task, TaskContext


class Empty(BaseModel):
    pass


async def _fails(payload: Empty, ctx: TaskContext) -> None:
    raise RuntimeError("upstream down")


async def test_the_daemon_retries_a_failing_job_after_its_tasks_own_backoff_not_the_global_one(
    database_url: str, conn: asyncpg.Connection
) -> None:
    slow = Task("slow_retry", _fails, Empty, max_attempts=3, backoff_base_s=600.0, backoff_max_s=600.0,
                backoff_jitter=0.0)
    settings = make_settings(database_url, backoff_base_s=0.05, backoff_max_s=0.2)  # the global policy
    job = await queue.enqueue(conn, queue.NewJob("slow_retry", {}, max_attempts=3))
    async with running_daemon(settings, Registry.of([slow])):

        async def retried() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM job_runs WHERE job_id = $1", job.id) == 1)

        await wait_for(retried)
    row = await conn.fetchrow(
        "SELECT status, attempts, extract(epoch FROM run_at - r.finished_at) AS delay_s FROM job_queue "
        "JOIN job_runs AS r ON r.job_id = job_queue.id WHERE job_queue.id = $1", job.id)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert 599 <= row["delay_s"] <= 601, row["delay_s"]


def _enqueue(database_url: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "worker", "enqueue", *args, "--json"],
                          env=worker_env(database_url), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_enqueue_gives_the_job_its_tasks_priority_unless_one_is_given(
    database_url: str, conn: asyncpg.Connection
) -> None:
    _enqueue(database_url, "cleanup")  # cleanup declares MAINTENANCE_PRIORITY (1000)
    _enqueue(database_url, "cleanup", "--priority", "5", "--dedupe-key", "second")
    _enqueue(database_url, "noop")
    rows = await conn.fetch("SELECT task_type, priority FROM job_queue ORDER BY created_at")
    assert [(r["task_type"], r["priority"]) for r in rows] == [("cleanup", 1000), ("cleanup", 5), ("noop", 0)]
