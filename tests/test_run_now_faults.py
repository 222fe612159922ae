"""`worker jobs run-now` runs its job through the runner /api/jobs/run uses (worker/runtime/jobrun.py): when the
database path drops or black-holes mid-run, the job is stopped once its lease could not be renewed for 80 % of
WORKER_LEASE_S, the command ends with one redacted line and exit 1, and the job is not recorded as run here (its
lease lapses and recovery hands it back), so it never overlaps an attempt another worker starts."""

from __future__ import annotations

import subprocess
import sys

import anyio
import asyncpg
import pytest

from tests.support.daemon import wait_for
from tests.support.procs import worker_env
from tests.support.tcpproxy import TcpProxy
from worker import queue

LEASE_S = 3.0


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["drop", "blackhole"])
async def test_run_now_stops_its_job_when_the_database_path_is_cut_and_exits_1_in_one_line(
    database_url: str, conn: asyncpg.Connection, fault: str
) -> None:
    job = await queue.enqueue(conn, queue.NewJob("noop", {"sleep_s": 60}))
    with TcpProxy() as proxy:
        env = worker_env(proxy.url(database_url), WORKER_LEASE_S=str(LEASE_S), WORKER_DB_CALL_TIMEOUT_S="2")
        proc = subprocess.Popen([sys.executable, "-m", "worker", "jobs", "run-now", str(job.id)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:

            async def running() -> bool:
                return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job.id) == "running"

            await wait_for(running, timeout_s=20)
            await anyio.sleep(LEASE_S / 2)  # past a renewal or so: the job is well under way
            getattr(proxy, fault)()
            # Ends on its own: the lease rule stops the job (a hang here is the defect this test guards).
            code = await anyio.to_thread.run_sync(lambda: proc.wait(timeout=LEASE_S * 5))
            _, err = proc.communicate(timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("worker: error: job ") and "Traceback" not in err, err
    assert "not recorded" in err and "postgres@" not in err
    row = await conn.fetchrow("SELECT status, attempts, locked_until <= now() + make_interval(secs => $2) AS lapses"
                              " FROM job_queue WHERE id = $1", job.id, LEASE_S)
    assert row["attempts"] == 1 and (row["status"] == "pending" or (row["status"] == "running" and row["lapses"]))
    assert await conn.fetchval("SELECT count(*) FROM job_runs WHERE job_id = $1 AND outcome = 'succeeded'",
                               job.id) == 0
    # Recovery hands it back once the lease lapses; nobody recorded attempt 1 as a success or failure.
    await anyio.sleep(LEASE_S)
    _, recovered = await queue.recover_and_claim(conn, worker_id="other", task_types=["noop"], limit=1, lease_s=30)
    assert [r["id"] for r in recovered] == [job.id] or row["status"] == "pending"
    assert await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job.id) in ("pending", "running")
