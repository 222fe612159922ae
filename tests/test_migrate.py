import asyncio
import re

import asyncpg

from worker import db
from worker.migrate import latest_version, migrate, schema_status
from worker.sql import migration_files


async def test_migrate_applies_everything_then_is_a_no_op(empty_database_url: str) -> None:
    async with db.connection(empty_database_url) as conn:
        assert (await schema_status(conn)).current == 0
        first = await migrate(conn)
        assert first == [v for v, _, _ in migration_files()]
        assert await migrate(conn) == []
        status = await schema_status(conn)
        assert status.up_to_date and status.current == latest_version()


async def test_two_concurrent_migrations_apply_each_file_once(empty_database_url: str) -> None:
    conns = [await db.connect(empty_database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(v for r in results for v in r)
        assert applied == [v for v, _, _ in migration_files()]
        count = await conns[0].fetchval("SELECT count(*) FROM worker_migrations")
        assert count == len(migration_files())
    finally:
        for c in conns:
            await c.close()


async def test_migrated_schema_has_what_the_files_declare(conn: asyncpg.Connection) -> None:
    text = "\n".join(sql for _, _, sql in migration_files())
    tables = set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", text))
    indexes = set(re.findall(r"CREATE (?:UNIQUE )?INDEX (\w+)", text)) - set(
        re.findall(r"DROP INDEX (?:IF EXISTS )?(\w+)", text)
    )
    triggers = set(re.findall(r"CREATE TRIGGER (\w+)", text))
    policies = set(re.findall(r"CREATE POLICY (\w+)", text))
    have_tables = {
        r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
    }
    have_indexes = {
        r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname='public'")
    }
    have_triggers = {r["tgname"] for r in await conn.fetch("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
    have_policies = {r["policyname"] for r in await conn.fetch("SELECT policyname FROM pg_policies")}
    assert {"job_queue", "job_runs"} <= tables
    assert tables <= have_tables
    assert indexes <= have_indexes
    assert "job_queue_task_type_idx" not in have_indexes  # dropped by 004
    assert triggers <= have_triggers
    assert policies <= have_policies
    columns = {
        r["column_name"]: r["data_type"]
        for r in await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'job_queue'"
        )
    }
    assert columns["id"] == "uuid"
    assert columns["payload"] == "jsonb"
    assert columns["result"] == "jsonb"
    assert columns["run_at"] == "timestamp with time zone"
    for name in ("task_type", "status", "priority", "attempts", "max_attempts", "last_error", "dedupe_key",
                 "locked_by", "locked_until", "created_at", "updated_at", "started_at", "finished_at"):
        assert name in columns
    rls = await conn.fetch("SELECT relname, relrowsecurity FROM pg_class WHERE relname IN ('job_queue','job_runs')")
    assert all(r["relrowsecurity"] for r in rls)


async def test_status_constraint_rejects_unknown_status(conn: asyncpg.Connection) -> None:
    try:
        await conn.execute("INSERT INTO job_queue (task_type, status) VALUES ('noop', 'exploded')")
    except asyncpg.CheckViolationError:
        pass
    else:
        raise AssertionError("an unknown status was accepted")
