import asyncio
import hashlib
import re
import subprocess
from pathlib import Path

import asyncpg
import pytest

from worker import db
from worker.errors import MigrationError
from worker.migrate import RELEASED, latest_version, migrate, schema_status
from worker.sql import migration_files

RELEASE_COMMIT = "6fbcc213fc35aa519bc76ed9a583d1244bee8a26"
"""The last commit whose migrations the checksum covered as raw text (worker/migrate.py, RELEASED)."""


def _released_files() -> tuple[tuple[int, str, str], ...]:
    """migration_files() as they were at RELEASE_COMMIT (comments and all), read from git; skips without it."""
    root = Path(__file__).resolve().parent.parent
    found = []
    for version, name, _ in migration_files():
        if version not in RELEASED:
            continue
        try:
            text = subprocess.run(
                ["git", "-C", str(root), "show", f"{RELEASE_COMMIT}:sql/migrations/{version:03d}_{name}.sql"],
                capture_output=True, text=True, check=True, timeout=30,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            pytest.skip("no git history to read the released migrations from")
        found.append((version, name, text))
    return tuple(found)


def _with_statement_changed(version: int) -> tuple[tuple[int, str, str], ...]:
    return tuple(
        (v, n, sql + "\nCOMMENT ON TABLE job_queue IS 'changed';\n" if v == version else sql)
        for v, n, sql in migration_files()
    )


async def test_migrate_applies_everything_then_is_a_no_op(empty_database_url: str) -> None:
    async with db.connection(empty_database_url) as conn:
        assert (await schema_status(conn)).current == 0
        first = await migrate(conn)
        assert first == [v for v, _, _ in migration_files()]
        assert await migrate(conn) == []
        status = await schema_status(conn)
        assert status.up_to_date and status.current == latest_version()


async def test_a_database_migrated_with_the_released_text_keeps_migrating_after_comments_are_reworded(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = _released_files()
    assert all(hashlib.sha256(sql.encode()).hexdigest() == RELEASED[v][0] for v, _, sql in released)
    async with db.connection(empty_database_url) as conn:
        # As the releases before token checksums did: the raw text applied, its raw sha256 recorded.
        await conn.execute("""CREATE TABLE worker_migrations (version integer PRIMARY KEY, name text NOT NULL,
                              checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())""")
        for version, name, sql in released:
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO worker_migrations VALUES ($1, $2, $3)", version, name,
                                   hashlib.sha256(sql.encode()).hexdigest())
        assert await migrate(conn) == [v for v, _, _ in migration_files() if v not in RELEASED]
        assert await migrate(conn) == []
        monkeypatch.setattr("worker.migrate.migration_files", lambda: _with_statement_changed(4))
        with pytest.raises(MigrationError, match="004_drop_task_type_index was changed after it was applied"):
            await migrate(conn)


async def test_a_changed_statement_in_an_applied_migration_is_refused_and_a_reworded_comment_is_not(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with db.connection(empty_database_url) as conn:
        await migrate(conn)
        reworded = tuple(
            (v, n, f"-- {v:03d}: reworded header\n" + sql.replace("--", "-- (reworded) --") if v == 5 else sql)
            for v, n, sql in migration_files()
        )
        monkeypatch.setattr("worker.migrate.migration_files", lambda: reworded)
        assert await migrate(conn) == []
        monkeypatch.setattr("worker.migrate.migration_files", lambda: _with_statement_changed(5))
        with pytest.raises(MigrationError, match="005_cheaper_status_changes was changed after it was applied"):
            await migrate(conn)


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
    triggers: set[str] = set()
    for verb, name in re.findall(r"(CREATE|DROP) TRIGGER (?:IF EXISTS )?(\w+)", text):  # in order: 013, 019 drop some
        (triggers.add if verb == "CREATE" else triggers.discard)(name)
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
    assert triggers == have_triggers
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
