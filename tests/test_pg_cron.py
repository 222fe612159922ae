"""deploy/supabase/ against a real pg_cron (Debian's postgresql-15-cron) in a throwaway cluster.

pg_net and Vault cannot be installed here: their SQL is loaded against minimal stand-ins of the objects the
docs name (`vault.decrypted_secrets`, `net.http_post`, `net.http_request_queue`, `net._http_response`) inside a
transaction that is rolled back.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel, ConfigDict

from tests.support.daemon import make_settings, running_daemon, wait_for
from worker import db
from worker.cli.pgcluster import Cluster, find_bindir, throwaway_cluster
from worker.migrate import migrate
from worker.tasks import Registry, Task, TaskContext

ROOT = Path(__file__).resolve().parent.parent
SUPABASE = ROOT / "deploy" / "supabase"
CRON_SQL = SUPABASE / "01_cron_enqueue.sql"
NET_SQL = SUPABASE / "02_trigger_via_pg_net.sql"
AUDIT_SQL = SUPABASE / "03_audit.sql"
ROLLBACK_SQL = SUPABASE / "99_rollback.sql"
DOCS = ROOT / "docs" / "supabase.md"

CRON_SETTINGS = {
    "shared_preload_libraries": "pg_cron",
    "cron.database_name": "postgres",
    "cron.use_background_workers": "on",
    "max_worker_processes": "20",
}

STUBS = """
CREATE SCHEMA vault;
CREATE TABLE vault.decrypted_secrets (name text PRIMARY KEY, decrypted_secret text NOT NULL);
CREATE SCHEMA net;
CREATE TABLE net.http_request_queue (id bigserial PRIMARY KEY, url text, body bytea, headers jsonb);
CREATE TABLE net._http_response (
    id bigint, status_code integer, content text, error_msg text, created timestamptz DEFAULT now()
);
CREATE TABLE net.calls (url text, body jsonb, headers jsonb, timeout_milliseconds integer);
CREATE FUNCTION net.http_post(
    url text, body jsonb DEFAULT '{}'::jsonb, params jsonb DEFAULT '{}'::jsonb,
    headers jsonb DEFAULT '{"Content-Type": "application/json"}'::jsonb, timeout_milliseconds integer DEFAULT 5000
) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO net.calls VALUES (url, body, headers, timeout_milliseconds);
    SELECT 1::bigint;
$$;
"""


@pytest.fixture(scope="module")
def cron_cluster() -> Iterator[Cluster]:
    bindir = find_bindir()
    assert bindir is not None, "PostgreSQL server binaries are missing"
    lib = Path(bindir).parent / "lib" / "pg_cron.so"
    if not lib.exists():
        pytest.fail(f"pg_cron is not installed ({lib} missing): apt-get install postgresql-15-cron")
    with throwaway_cluster(CRON_SETTINGS) as cluster:
        yield cluster


@pytest.fixture
async def cron_db(cron_cluster: Cluster) -> AsyncIterator[asyncpg.Connection]:
    """The cluster's `postgres` database (where pg_cron lives), migrated, with no schedules and no jobs."""
    conn = await db.connect(cron_cluster.url())
    try:
        await migrate(conn)
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        await conn.execute("SELECT cron.unschedule(jobid) FROM cron.job")
        await conn.execute("TRUNCATE job_queue CASCADE")
        yield conn
    finally:
        await conn.close()


async def _cron_jobs(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    return {r["jobname"]: r for r in await conn.fetch("SELECT * FROM cron.job")}


async def _count(conn: asyncpg.Connection, task_type: str) -> int:
    n: int = await conn.fetchval("SELECT count(*) FROM job_queue WHERE task_type = $1", task_type)
    return n


class _AnyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _recording_registry(calls: list[str]) -> Registry:
    async def handler(payload: _AnyPayload, ctx: TaskContext) -> dict[str, Any]:
        calls.append(ctx.job.task_type)
        return {"ok": True}

    registry = Registry()
    registry.add(Task("game_platform_sync", handler, _AnyPayload))
    registry.add(Task("cleanup", handler, _AnyPayload))
    return registry


async def test_cron_sql_schedules_the_hourly_sync_and_the_daily_cleanup(cron_db: asyncpg.Connection) -> None:
    await cron_db.execute(CRON_SQL.read_text())
    await cron_db.execute(CRON_SQL.read_text())  # applying twice updates, never duplicates
    jobs = await _cron_jobs(cron_db)
    assert set(jobs) == {"job_queue_game_platform_sync", "job_queue_cleanup_daily"}
    assert jobs["job_queue_game_platform_sync"]["schedule"] == "0 * * * *"
    assert jobs["job_queue_cleanup_daily"]["schedule"] == "15 3 * * *"
    assert all(j["active"] and j["database"] == "postgres" for j in jobs.values())
    assert all("net." not in j["command"] for j in jobs.values()), "the enqueue path must not use pg_net"


async def test_running_the_cron_command_twice_enqueues_one_job_that_the_daemon_completes(
    cron_cluster: Cluster, cron_db: asyncpg.Connection
) -> None:
    await cron_db.execute(CRON_SQL.read_text())
    jobs = await _cron_jobs(cron_db)
    command = jobs["job_queue_game_platform_sync"]["command"]
    await cron_db.execute(command)
    await cron_db.execute(command)
    assert await _count(cron_db, "game_platform_sync") == 1

    calls: list[str] = []
    settings = make_settings(cron_cluster.url())
    async with running_daemon(settings, _recording_registry(calls)):

        async def done() -> bool:
            status = await cron_db.fetchval("SELECT status FROM job_queue WHERE task_type = 'game_platform_sync'")
            return bool(status == "succeeded")

        await wait_for(done)
        await cron_db.execute(command)  # the same hour slot after the job finished: still nothing new
        await asyncio.sleep(0.2)
    assert await _count(cron_db, "game_platform_sync") == 1
    assert len(calls) == 1
    runs = await cron_db.fetchval("SELECT count(*) FROM job_runs WHERE outcome = 'succeeded'")
    assert runs == 1
    key = await cron_db.fetchval("SELECT dedupe_key FROM job_queue")
    assert re.fullmatch(r"cron:game_platform_sync:\d{4}-\d\d-\d\dT\d\d:00Z", key)


async def test_cleanup_command_enqueues_one_cleanup_job_per_day(cron_db: asyncpg.Connection) -> None:
    await cron_db.execute(CRON_SQL.read_text())
    command = (await _cron_jobs(cron_db))["job_queue_cleanup_daily"]["command"]
    for _ in range(3):
        await cron_db.execute(command)
    assert await _count(cron_db, "cleanup") == 1
    assert await _count(cron_db, "game_platform_sync") == 0


async def test_rollback_removes_every_schedule_and_is_safe_to_repeat(cron_db: asyncpg.Connection) -> None:
    await cron_db.execute(CRON_SQL.read_text())
    await cron_db.execute("SELECT cron.schedule('someone_elses_job', '0 1 * * *', 'SELECT 1')")
    await cron_db.execute(ROLLBACK_SQL.read_text())
    await cron_db.execute(ROLLBACK_SQL.read_text())
    assert set(await _cron_jobs(cron_db)) == {"someone_elses_job"}


async def test_pg_net_trigger_refuses_to_load_without_pg_net_and_vault(cron_db: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.RaiseError, match="pg_net"):
        await cron_db.execute(NET_SQL.read_text())
    assert await _cron_jobs(cron_db) == {}


async def test_pg_net_trigger_posts_a_minimal_authenticated_body_to_the_vault_endpoint(
    cron_db: asyncpg.Connection,
) -> None:
    tr = cron_db.transaction()
    await tr.start()
    try:
        await cron_db.execute(STUBS)
        await cron_db.execute(
            "INSERT INTO vault.decrypted_secrets VALUES "
            "('job_queue_worker_endpoint', 'http://worker.internal:8080/trigger'), "
            "('job_queue_runner_secret', 's3cret')"
        )
        await cron_db.execute(NET_SQL.read_text())
        command = (await _cron_jobs(cron_db))["job_queue_trigger_worker"]["command"]
        await cron_db.execute(command)
        call = await cron_db.fetchrow("SELECT * FROM net.calls")
        assert call["url"] == "http://worker.internal:8080/trigger"
        assert call["headers"]["Authorization"] == "Bearer s3cret"
        assert set(call["body"]) == {"task_type", "dedupe_key"}
        assert call["body"]["task_type"] == "game_platform_sync"
        assert len(str(call["body"])) < 200
        assert call["timeout_milliseconds"] <= 10000
        await cron_db.execute(AUDIT_SQL.read_text())  # the audit queries run against these objects
    finally:
        await tr.rollback()
    assert await cron_db.fetchval("SELECT to_regnamespace('vault')") is None


def test_pg_net_sql_reads_only_the_vault_secrets_the_docs_define() -> None:
    sql = NET_SQL.read_text()
    names = set(re.findall(r"name\s*=\s*'([a-z_]+)'", sql))
    assert names == {"job_queue_worker_endpoint", "job_queue_runner_secret"}
    docs = DOCS.read_text()
    for name in names:
        assert name in docs
    for referenced in set(re.findall(r"\b(net\.[a-z_]+|vault\.[a-z_]+)", sql)):
        assert referenced in docs, f"{referenced} is not documented"


async def test_cron_enqueued_jobs_are_valid_for_the_shipped_tasks_and_cleanup_really_runs(
    cron_cluster: Cluster, cron_db: asyncpg.Connection
) -> None:
    from worker.builtin import default_registry

    await cron_db.execute(CRON_SQL.read_text())
    jobs = await _cron_jobs(cron_db)
    for name in ("job_queue_game_platform_sync", "job_queue_cleanup_daily"):
        await cron_db.execute(jobs[name]["command"])
    settings = make_settings(cron_cluster.url())
    registry = default_registry(settings)
    for row in await cron_db.fetch("SELECT task_type, payload FROM job_queue"):
        registry.validate(row["task_type"], row["payload"])  # raises when the shipped task rejects it
    await cron_db.execute("DELETE FROM job_queue WHERE task_type = 'game_platform_sync'")
    async with running_daemon(settings, registry):

        async def done() -> bool:
            status = await cron_db.fetchval("SELECT status FROM job_queue WHERE task_type = 'cleanup'")
            return bool(status == "succeeded")

        await wait_for(done)
    result = await cron_db.fetchval("SELECT result FROM job_queue WHERE task_type = 'cleanup'")
    assert isinstance(result, dict)
