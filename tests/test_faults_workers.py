"""Worker processes dying or stopping mid-job (real `worker run` processes, real PostgreSQL):

* kill -9 mid-job: another worker takes the job over once its lease expired (seconds, not an hour), the ledger
  shows the abandoned attempt, and the job succeeds exactly once;
* a long job on a live worker keeps its lease for many lease periods and is never taken over;
* SIGTERM during long jobs: the process exits within the grace period and the jobs are pending again at once,
  the interrupted attempt not counted.
"""

from __future__ import annotations

import time

import asyncpg
import pytest

from tests.support.daemon import wait_for
from tests.support.procs import WorkerProcess, worker_env, workers

LEASE_S = 2.0


async def _status(conn: asyncpg.Connection, job_id: object) -> asyncpg.Record:
    return await conn.fetchrow(
        "SELECT status, attempts, locked_by, locked_until, started_at, run_at, last_error FROM job_queue "
        "WHERE id = $1", job_id,
    )


async def _insert(conn: asyncpg.Connection, payload: dict[str, object], *, max_attempts: int = 5) -> object:
    return await conn.fetchval(
        "INSERT INTO job_queue (task_type, payload, max_attempts) VALUES ('noop', $1, $2) RETURNING id",
        payload, max_attempts,
    )


@pytest.mark.slow
async def test_a_job_of_a_worker_killed_mid_run_is_taken_over_after_its_lease_and_succeeds_once(
    database_url: str, conn: asyncpg.Connection
) -> None:
    # The second worker starts only once the first one holds the job: otherwise it may claim it itself.
    with workers(lambda i: worker_env(database_url), 1, prefix="kill") as procs:
        first = procs[0]
        await first.wait_event("listener.listening")
        job_id = await _insert(conn, {"sleep_s": 2.5})
        await first.wait_event("job.claimed", job_id=str(job_id))
        procs.append(second := WorkerProcess(worker_env(database_url), name="kill1"))  # cleaned up with procs
        await second.wait_event("listener.listening")
        first.kill9()
        await first.wait_exit()
        killed_at = await conn.fetchval("SELECT clock_timestamp()")
        lease_held_until = (await _status(conn, job_id))["locked_until"]

        async def succeeded() -> bool:
            return (await _status(conn, job_id))["status"] == "succeeded"

        await wait_for(succeeded, timeout_s=LEASE_S + 10)
        await second.wait_event("job.lease_recovered", job_id=str(job_id), abandoned_by="kill0")

    row = await _status(conn, job_id)
    runs = await conn.fetch(
        "SELECT attempt, worker_id, outcome, started_at, finished_at FROM job_runs WHERE job_id = $1 "
        "ORDER BY attempt", job_id,
    )
    assert row["attempts"] == 2
    assert [(r["attempt"], r["worker_id"], r["outcome"]) for r in runs] == [
        (1, "kill0", "abandoned"), (2, "kill1", "succeeded"),
    ]
    second_start = runs[1]["started_at"]
    # Taken over only once the lease had run out, and soon after (the lease plus the recovery sweep).
    assert second_start >= lease_held_until
    recovery_s = (second_start - killed_at).total_seconds()
    assert recovery_s < LEASE_S + 5
    print(f"\nrecovery after kill -9: {recovery_s:.2f}s (lease {LEASE_S:g}s, recovery sweep 0.5s)")


@pytest.mark.slow
async def test_a_long_job_on_a_live_worker_keeps_renewing_its_lease_and_is_never_taken_over(
    database_url: str, conn: asyncpg.Connection
) -> None:
    run_s = LEASE_S * 3.5
    with workers(lambda i: worker_env(database_url), 2, prefix="live") as procs:
        for p in procs:
            await p.wait_event("listener.listening")
        job_id = await _insert(conn, {"sleep_s": run_s})
        leases: list[object] = []
        deadline = time.monotonic() + run_s + 10
        while time.monotonic() < deadline:
            row = await conn.fetchrow(
                "SELECT status, locked_until, locked_until > clock_timestamp() AS held FROM job_queue WHERE id = $1",
                job_id,
            )
            if row["status"] == "succeeded":
                break
            if row["status"] == "running":
                assert row["held"], "a running job's lease ran out while its worker was alive"
                leases.append(row["locked_until"])
            await conn.execute("SELECT pg_sleep(0.2)")
    row = await _status(conn, job_id)
    runs = await conn.fetch("SELECT attempt, outcome FROM job_runs WHERE job_id = $1", job_id)
    assert (row["status"], row["attempts"]) == ("succeeded", 1)
    assert [(r["attempt"], r["outcome"]) for r in runs] == [(1, "succeeded")]
    distinct = sorted(set(leases))
    # Renewed again and again: the lease moved forward several times, well past the first one.
    assert len(distinct) >= 4
    assert (distinct[-1] - distinct[0]).total_seconds() > 2 * LEASE_S
    assert not any(p.named("job.lease_recovered") for p in procs)


@pytest.mark.slow
async def test_sigterm_during_long_jobs_exits_within_the_grace_period_and_hands_the_jobs_back_at_once(
    database_url: str, conn: asyncpg.Connection
) -> None:
    grace_s = 1.0
    proc = WorkerProcess(worker_env(database_url, WORKER_SHUTDOWN_GRACE_S=str(grace_s)), name="term")
    try:
        await proc.wait_event("listener.listening")
        quick = await _insert(conn, {"sleep_s": 0.5})
        slow = [await _insert(conn, {"sleep_s": 60}, max_attempts=1) for _ in range(3)]
        for job_id in [quick, *slow]:
            await proc.wait_event("job.claimed", job_id=str(job_id))
        sent = time.monotonic()
        proc.terminate()
        code = await proc.wait_exit(timeout_s=grace_s + 15)
        took = time.monotonic() - sent
    finally:
        proc.cleanup()
    assert code == 0, proc.output
    assert took < grace_s + 5
    assert (await _status(conn, quick))["status"] == "succeeded"  # finished inside the grace period
    now = await conn.fetchval("SELECT clock_timestamp()")
    for job_id in slow:
        row = await _status(conn, job_id)
        # max_attempts 1: had the interrupted attempt been counted, the job could never run again.
        assert (row["status"], row["attempts"], row["locked_by"]) == ("pending", 0, None)
        assert row["run_at"] <= now
        runs = await conn.fetch("SELECT attempt, outcome, worker_id FROM job_runs WHERE job_id = $1", job_id)
        assert [(r["attempt"], r["outcome"], r["worker_id"]) for r in runs] == [(1, "interrupted", "term")]
        assert proc.named("job.interrupted", job_id=str(job_id))
    print(f"\nSIGTERM with 3 long jobs: exited in {took:.2f}s (grace {grace_s:g}s)")
