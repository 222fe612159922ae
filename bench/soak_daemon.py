"""The soak bench's daemon and its drains (bench/bench_soak.py, bench/pg_cpu.py, bench/cleanup_cost.py): `worker
run` as a restarted subprocess, the drain of a given backlog, and the fills of finished and pending jobs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg

from bench.procs import REPO_ROOT, clean_env
from bench.soak_meters import CpuMeter, cores

__all__ = ["FINISHED", "PENDING", "Daemon", "drain", "reset"]

FINISHED = """
WITH jobs AS (
    INSERT INTO job_queue (id, task_type, status, attempts, run_at, created_at, started_at, finished_at)
    SELECT job_queue_uuidv7_at(now() - interval '2 hours'), 'noop', 'succeeded', 1, now() - interval '2 hours',
           now() - interval '2 hours', now() - interval '2 hours', now() - interval '2 hours' + g * interval '1 us'
    FROM generate_series(1, $1) AS g
    RETURNING id, started_at, finished_at
)
INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, duration_ms)
SELECT id, 1, 'earlier', started_at, finished_at, 'succeeded', 0 FROM jobs"""
PENDING = "INSERT INTO job_queue (task_type) SELECT 'noop' FROM generate_series(1, $1)"


class Daemon:
    """`worker run` as a subprocess with default settings, restarted (and counted) whenever it exits."""

    def __init__(self, url: str, workdir: Path, *, cleanup: bool, extra_env: dict[str, str] | None = None) -> None:
        self.env = clean_env() | {
            "WORKER_DATABASE_URL": url, "WORKER_HTTP_ENABLED": "false", "WORKER_LOG_LEVEL": "warning",
            "WORKER_LOG_FORMAT": "json", "WORKER_SCHEDULES_ENABLED": "true" if cleanup else "false",
            "WORKER_SCHEDULE_CLEANUP": "* * * * *", "WORKER_SCHEDULE_GAME_PLATFORM_SYNC": "",
            "WORKER_RETENTION_SUCCEEDED_DAYS": str(60 / 86400), "WORKER_RETENTION_FAILED_DAYS": str(60 / 86400),
        } | (extra_env or {})
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "worker.log"
        self.log.write_bytes(b"")  # this run's lines only: restarts append, an earlier run's are not counted
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "worker", "run"], stdout=out,
                                         stderr=subprocess.STDOUT, env=self.env, cwd=REPO_ROOT)

    def keep_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.restarts += 1
            self.start()

    def count(self, event: str) -> int:
        try:
            return self.log.read_text(errors="replace").count(f'"{event}"')
        except OSError:
            return 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def drain(conn: asyncpg.Connection, daemon: Daemon, jobs: int, meter: CpuMeter | None = None) -> float:
    """Start the daemon on `jobs` pending jobs; jobs per second from the first start to the last finish. With
    `meter`, prints who used the CPU from the first poll that saw a job started to the last one."""
    daemon.start()
    measuring = False
    while await conn.fetchval(_ANY_LEFT):
        if meter is not None and not measuring and await conn.fetchval(_ANY_STARTED):
            meter.take(daemon.proc)  # the daemon's start-up is not the drain's: its CPU so far is the baseline
            measuring = True
        daemon.keep_alive()
        await asyncio.sleep(0.2)
    if meter is not None:
        split = cores(meter.take(daemon.proc)) if measuring else "not measured (no poll saw it under way)"
        print("during the drain, cores: PostgreSQL (producer's backend, monitor's) | daemon | bench "
              f"| machine busy (stolen): {split}")
    daemon.stop()
    span = await conn.fetchval(
        "SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM job_queue WHERE status = 'succeeded'"
        " AND started_at IS NOT NULL AND finished_at > now() - interval '1 hour'")
    return jobs / max(float(span or 0), 1e-6)


_ANY_STARTED = "SELECT EXISTS (SELECT FROM job_queue WHERE status <> 'pending')"
# Whether any job is left, from the claim index and the running one: a count of them scanned the table (in
# parallel on a stock cluster), about 0.1 s of both cores per poll beside the burst's million finished jobs.
_ANY_LEFT = """SELECT EXISTS (SELECT FROM job_queue WHERE status = 'pending')
    OR EXISTS (SELECT FROM job_queue WHERE status = 'running')"""


async def reset(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE job_queue, job_runs")
