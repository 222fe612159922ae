"""What is stored holds no secret: a finished attempt's `last_error` (and its ledger row's `error`) and its `result`
are redacted before they are written, whatever path ran the job: the daemon, `POST /api/jobs/run`,
`worker jobs run-now`. Real processes, the game platform simulator in its mode that echoes the API key."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import asyncpg
import httpx
import pytest

from tests.support.daemon import wait_for
from tests.support.game_platform import Platform, seed_competitors
from tests.support.procs import WorkerProcess, worker_env
from worker.backoff import BackoffPolicy
from worker.game_platform.simulator import player_id
from worker.queue import Finished, Job
from worker.redaction import REDACTED, install_stored
from worker.runtime.runner import MAX_ERROR_CHARS, execute
from worker.tasks import EmptyPayload, Task, TaskContext

API_KEY = "s3cret-gp-key-echoed-5e21c7"
RUNNER_SECRET = "s3cret-runner-0b9d4e"

ENQUEUE = "INSERT INTO job_queue (task_type, payload, max_attempts) VALUES ($1, $2::jsonb, 1) RETURNING id"
STORED = """
SELECT j.status, j.last_error, j.result::text AS result, string_agg(coalesce(r.error, ''), ' ') AS ledger
FROM job_queue j LEFT JOIN job_runs r ON r.job_id = j.id WHERE j.id = $1 GROUP BY j.id
"""


async def _finished(conn: asyncpg.Connection, job_id: uuid.UUID) -> asyncpg.Record:
    async def done() -> bool:
        return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job_id) in ("succeeded", "failed")

    await wait_for(done, timeout_s=20)
    row = await conn.fetchrow(STORED, job_id)
    assert row is not None
    return row


@pytest.mark.slow
async def test_an_api_key_echoed_by_the_platform_is_stored_redacted_in_last_error_the_ledger_and_the_result(
    database_url: str, conn: asyncpg.Connection, pool: asyncpg.Pool, platform: Platform
) -> None:
    await seed_competitors(pool, 6)
    platform.sim.echo_key = True
    platform.sim.api_key = "the-platform-expects-another-key"  # 401, whose body quotes the key we sent
    env = worker_env(database_url, GAME_PLATFORM_BASE_URL=platform.url, GAME_PLATFORM_API_KEY=API_KEY)
    proc = WorkerProcess(env, name="stored-secrets")
    try:
        rejected = await conn.fetchval(ENQUEUE, "game_platform_sync", {})
        row = await _finished(conn, rejected)
        assert row["status"] == "failed"
        assert "PlatformAuthError" in row["last_error"] and f"(key {REDACTED})" in row["last_error"], row
        assert API_KEY not in row["last_error"] and API_KEY not in row["ledger"], row
        # the key accepted, two players reported unavailable with the key in the message: the job succeeds and
        # its result lists those competitors with the platform's message
        platform.sim.api_key = API_KEY
        platform.sim.failing_players = {player_id(0), player_id(3)}
        partial = await conn.fetchval(ENQUEUE, "game_platform_sync", {})
        row = await _finished(conn, partial)
        assert row["status"] == "succeeded", row
        result = json.loads(row["result"])
        assert result["failed"] == 2 and f"(key {REDACTED})" in result["errors"][0]["error"], result
        assert API_KEY not in row["result"], row
    finally:
        proc.terminate()
        await proc.wait_exit()
        proc.cleanup()


@pytest.mark.slow
async def test_an_error_quoting_a_secret_is_stored_redacted_when_run_by_api_jobs_run_and_by_run_now(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    # paused: the daemon leaves them alone; explicit runs ignore the pause
    await conn.execute("INSERT INTO job_queue_pause (task_type) VALUES ('noop')")
    payload = {"fail": f"upstream said: bad token {API_KEY}; runner {RUNNER_SECRET}", "permanent": True}
    by_http = await conn.fetchval(ENQUEUE, "noop", payload)
    by_cli = await conn.fetchval(ENQUEUE, "noop", payload)
    env = worker_env(database_url, GAME_PLATFORM_API_KEY=API_KEY, JOB_QUEUE_RUNNER_SECRET=RUNNER_SECRET,
                     WORKER_HTTP_ENABLED="true", WORKER_HTTP_HOST="127.0.0.1", WORKER_HTTP_PORT="0")
    proc = WorkerProcess(env, name="stored-secrets-http")
    try:
        port = await proc.http_port()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            answer = await client.post("/api/jobs/run", json={"ids": [str(by_http)]},
                                       headers={"Authorization": f"Bearer {RUNNER_SECRET}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["status"] == "failed"
        assert API_KEY not in answer.text and REDACTED in answer.text, answer.text
    finally:
        proc.terminate()
        await proc.wait_exit()
        proc.cleanup()
    cli = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "worker", "jobs", "run-now", str(by_cli), "--json"], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=30,
    ))
    assert cli.returncode == 1, cli.stderr
    assert API_KEY not in cli.stdout + cli.stderr and REDACTED in cli.stdout, cli.stdout
    for job_id in (by_http, by_cli):
        row = await conn.fetchrow(STORED, job_id)
        assert row["status"] == "failed", row
        assert row["last_error"] == f"PermanentJobError: upstream said: bad token {REDACTED}; runner {REDACTED}"
        assert row["ledger"] == row["last_error"]


@pytest.fixture
def stored_secrets() -> Iterator[list[str]]:
    """A process-wide stored redactor for one test, removed afterwards."""
    secrets = [API_KEY, 'quo"te\\back-7d1e', "pässwört-c0ffee"]
    install_stored(secrets)
    try:
        yield secrets
    finally:
        install_stored(())


def _job() -> Job:
    return Job(id=uuid.uuid4(), task_type="t", payload={}, attempt=1, max_attempts=1, priority=0,
               started_at=datetime.now(UTC))


async def _execute(handler: Any) -> Finished:
    job = _job()
    task = Task("t", handler, EmptyPayload)
    policy = BackoffPolicy(base_s=1.0, max_s=1.0, jitter=0.0)
    return await execute(task, job, TaskContext(job=job, worker_id="w"), timeout_s=5.0, policy=policy)


async def test_every_secret_form_is_removed_from_a_result_and_an_error_built_by_the_runner(
    stored_secrets: list[str],
) -> None:
    """Each secret, also one holding a quote and a backslash (escaped in the JSON text) or non-ASCII letters, in a
    value, in a key, nested in a list; and percent-encoded in an error."""
    async def returns(_p: Any, _c: TaskContext) -> Any:
        return {"a": [f"x{s}y" for s in stored_secrets], stored_secrets[1]: {"n": 1}, "b": None, "c": 2.5}

    async def raises(_p: Any, _c: TaskContext) -> Any:
        raise RuntimeError(f"GET /?key={quote(stored_secrets[2], safe='')} said {stored_secrets[1]}")

    ok = await _execute(returns)
    assert ok.result == {"a": [f"x{REDACTED}y"] * 3, REDACTED: {"n": 1}, "b": None, "c": 2.5}
    failed = await _execute(raises)
    assert failed.error == f"RuntimeError: GET /?key={REDACTED} said {REDACTED}"


async def test_a_result_without_a_secret_is_recorded_as_returned_not_copied(stored_secrets: list[str]) -> None:
    result = {"fetched": 3, "errors": [{"error": "timeout"}]}

    async def returns(_p: Any, _c: TaskContext) -> Any:
        return result

    assert (await _execute(returns)).result is result
    install_stored(())
    assert (await _execute(returns)).result is result


async def test_a_secret_across_the_error_length_cut_leaves_no_part_of_itself(stored_secrets: list[str]) -> None:
    async def raises(_p: Any, _c: TaskContext) -> Any:
        raise RuntimeError("x" * (MAX_ERROR_CHARS - len("RuntimeError: ") - 10) + API_KEY + "y" * 100)

    error = (await _execute(raises)).error
    assert error is not None and len(error) == MAX_ERROR_CHARS
    assert error.endswith("x" * 10 + REDACTED), error[-40:]
    assert API_KEY[:10] not in error, error[-40:]
