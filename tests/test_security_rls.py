"""Row level security on every table of the product: job_queue, job_runs and the control tables of migrations
002 (competitors, their stats) and 003 (pause flags, schedule state, archives). A role that is neither
service_role nor admin reads no row and cannot insert, update or delete one, even with full table grants
(RLS, not grants, is what stops it); service_role runs every queue operation the daemon performs."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.seed import SEED_EVERY_TABLE
from worker import queue
from worker.db import _init_connection
from worker.runtime.runner import success

TABLES = [
    "job_queue", "job_runs", "job_queue_pause", "job_queue_schedule", "job_queue_archive", "job_runs_archive",
    "competitors", "competitor_game_stats", "job_queue_limits", "job_queue_rate_buckets",
]



@pytest.fixture
async def seeded(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    await conn.execute(SEED_EVERY_TABLE)
    for table in TABLES:
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") >= 1, table
    yield conn


async def test_a_role_that_is_neither_service_role_nor_admin_can_touch_no_row_of_any_table(
    seeded: asyncpg.Connection,
) -> None:
    role = f"app_user_{uuid.uuid4().hex[:8]}"
    await seeded.execute(f"CREATE ROLE {role} NOLOGIN; GRANT USAGE ON SCHEMA public TO {role}")
    await seeded.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} TO {role}")
    before = {t: await seeded.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
    try:
        await seeded.execute(f"SET ROLE {role}")
        assert not await seeded.fetchval("SELECT public.is_admin_user()")
        for table in TABLES:
            assert await seeded.fetchval(f"SELECT count(*) FROM {table}") == 0, table
            assert await seeded.execute(f"UPDATE {table} SET {_column(table)} = {_column(table)}") == "UPDATE 0"
            assert await seeded.execute(f"DELETE FROM {table}") == "DELETE 0", table
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await seeded.execute("INSERT INTO job_queue (task_type) VALUES ('noop')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await seeded.execute("INSERT INTO job_queue_pause (task_type) VALUES ('*')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await seeded.execute("INSERT INTO competitors (coach_id, name, platform_player_id) "
                                 "VALUES (gen_random_uuid(), 'x', 'p00002')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await seeded.execute("INSERT INTO job_queue_schedule (name, cron, task_type, last_slot) "
                                 "VALUES ('evil', '* * * * *', 'noop', now())")
        # the queue functions refuse too: claim finds nothing to claim
        assert await queue.claim(seeded, worker_id="evil", task_types=["noop"], limit=10, lease_s=30) == []
    finally:
        await seeded.execute("RESET ROLE")
        await seeded.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")  # cluster-wide: never left behind
    assert {t: await seeded.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES} == before


def _column(table: str) -> str:
    return {"job_queue_pause": "task_type", "job_queue_schedule": "name", "competitors": "name",
            "competitor_game_stats": "wins", "job_runs": "attempt", "job_runs_archive": "attempt",
            "job_queue_limits": "task_type", "job_queue_rate_buckets": "bucket"}.get(table, "id")


async def test_service_role_runs_every_queue_operation_of_the_daemon(seeded: asyncpg.Connection) -> None:
    await _init_connection(seeded)
    await seeded.execute("SET ROLE service_role")
    try:
        for table in TABLES:
            assert await seeded.fetchval(f"SELECT count(*) FROM {table}") >= 1, table
        enq = await queue.enqueue(seeded, queue.NewJob("noop", {"sleep_s": 0}))
        await seeded.execute("DELETE FROM job_queue_pause")
        jobs = await queue.claim(seeded, worker_id="svc", task_types=["noop"], limit=10, lease_s=30)
        assert enq.id in {j.id for j in jobs}
        job = next(j for j in jobs if j.id == enq.id)
        assert await queue.heartbeat(seeded, "svc", [job.id], 30) == {job.id}
        acked = await queue.finish(seeded, "svc", [success(job, {"ok": True}, time.monotonic())])
        assert acked == {job.id}
        assert (await queue.get_job(seeded, job.id))["status"] == "succeeded"
        assert [r["outcome"] for r in await queue.job_runs(seeded, job.id)] == ["succeeded"]
        await queue.recover_expired(seeded)
    finally:
        await seeded.execute("RESET ROLE")
