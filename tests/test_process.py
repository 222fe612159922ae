"""`worker run` as a real process: it processes a job inserted by SQL and exits 0 on SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

import asyncpg
import pytest

from tests.support.daemon import wait_for


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update({
        "DATABASE_URL": database_url,
        "WORKER_LOG_FORMAT": "json",
        "WORKER_HTTP_ENABLED": "false",
        "WORKER_SCHEDULES_ENABLED": "false",
        "WORKER_SHUTDOWN_GRACE_S": "1",
        **extra,
    })
    return env


@pytest.mark.timeout(60)
async def test_run_processes_a_job_and_exits_0_on_sigterm_handing_long_jobs_back(
    database_url: str, conn: asyncpg.Connection
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "run"], env=_env(database_url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        quick = await conn.fetchval("INSERT INTO job_queue (task_type) VALUES ('noop') RETURNING id")

        async def quick_done() -> bool:
            return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", quick) == "succeeded"

        await wait_for(quick_done, timeout_s=20)
        slow = await conn.fetchval(
            "INSERT INTO job_queue (task_type, payload) VALUES ('noop', '{\"sleep_s\": 60}') RETURNING id"
        )

        async def slow_running() -> bool:
            return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", slow) == "running"

        await wait_for(slow_running, timeout_s=10)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert time.monotonic() - sent < 10
        row = await conn.fetchrow("SELECT status, attempts, locked_by FROM job_queue WHERE id = $1", slow)
        assert (row["status"], row["attempts"], row["locked_by"]) == ("pending", 0, None)
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert any(e["event"] == "job.succeeded" and e["job_id"] == str(quick) for e in events)
        assert any(e["event"] == "job.interrupted" and e["job_id"] == str(slow) for e in events)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_run_against_an_unmigrated_database_says_to_migrate(empty_database_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "run"], env=_env(empty_database_url),
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 1
    assert "worker migrate" in proc.stderr.strip().splitlines()[-1]
