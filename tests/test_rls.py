"""Row level security: only service_role or an admin session may touch the queue tables."""

import uuid

import asyncpg
import pytest

ROLE_SETUP = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{r}') THEN CREATE ROLE {r} NOLOGIN; END IF;
END $$;
GRANT USAGE ON SCHEMA public TO {r};
GRANT SELECT, INSERT, UPDATE, DELETE ON job_queue, job_runs TO {r};
"""


async def _as_role(conn: asyncpg.Connection, role: str) -> None:
    await conn.execute(f"SET ROLE {role}")


@pytest.fixture
async def seeded(conn: asyncpg.Connection) -> asyncpg.Connection:
    job_id = await conn.fetchval("INSERT INTO job_queue (task_type) VALUES ('noop') RETURNING id")
    await conn.execute(
        "INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, duration_ms) "
        "VALUES ($1, 1, 'w', now(), now(), 'succeeded', 1)", job_id,
    )
    return conn


async def test_a_role_without_rights_reads_nothing_and_writes_nothing(seeded: asyncpg.Connection) -> None:
    role = f"app_user_{uuid.uuid4().hex[:8]}"
    await seeded.execute(ROLE_SETUP.format(r=role))
    try:
        await _as_role(seeded, role)
        assert await seeded.fetchval("SELECT count(*) FROM job_queue") == 0
        assert await seeded.fetchval("SELECT count(*) FROM job_runs") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await seeded.execute("INSERT INTO job_queue (task_type) VALUES ('noop')")
        assert await seeded.execute("UPDATE job_queue SET status = 'cancelled'") == "UPDATE 0"
        assert await seeded.execute("DELETE FROM job_queue") == "DELETE 0"
    finally:
        await seeded.execute("RESET ROLE")
        await _drop_role(seeded, role)  # roles are cluster-wide: never leave one behind, even on failure
    assert await seeded.fetchval("SELECT count(*) FROM job_queue WHERE status = 'pending'") == 1


async def test_service_role_reads_and_writes(seeded: asyncpg.Connection) -> None:
    await _as_role(seeded, "service_role")
    try:
        assert await seeded.fetchval("SELECT count(*) FROM job_queue") == 1
        await seeded.execute("INSERT INTO job_queue (task_type) VALUES ('noop')")
        assert await seeded.fetchval("SELECT count(*) FROM job_runs") == 1
    finally:
        await seeded.execute("RESET ROLE")


async def test_an_admin_session_reads_and_writes(seeded: asyncpg.Connection) -> None:
    role = f"admin_user_{uuid.uuid4().hex[:8]}"
    await seeded.execute(ROLE_SETUP.format(r=role))
    await seeded.execute(f"GRANT job_queue_admin TO {role}")
    try:
        await _as_role(seeded, role)
        assert await seeded.fetchval("SELECT count(*) FROM job_queue") == 1
        await seeded.execute("INSERT INTO job_queue (task_type) VALUES ('noop')")
    finally:
        await seeded.execute("RESET ROLE")
        await _drop_role(seeded, role)
    assert await seeded.fetchval("SELECT count(*) FROM job_queue") == 2


async def _drop_role(conn: asyncpg.Connection, role: str) -> None:
    await conn.execute(f"DROP OWNED BY {role}")  # its grants in this database
    await conn.execute(f"DROP ROLE {role}")
