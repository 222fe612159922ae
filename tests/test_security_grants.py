"""Grants under Supabase's default privileges: `anon` and `authenticated` get ALL on every new table, sequence and
function in `public`. Whatever the schema's defaults, no object the migrations create is readable or writable by
a role other than the owner, service_role and the admin rule (RLS policies on is_admin_user()).

The tables, sequences and functions are listed from the catalog, not by name, so that a table added by a later
migration without row level security or without revoking what the defaults grant fails here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.seed import SEED_EVERY_TABLE
from worker import db
from worker.migrate import migrate
from worker.sql import migration_files

# Roles are cluster-wide on the shared test server: created when missing (two sessions may race), never dropped.
CREATE_ROLES = """
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', r);
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END LOOP;
END
$$
"""

# What a Supabase project's database holds before any migration of ours: the default privileges, and an
# is_admin_user() of its own that reads the request's JWT claims (migration 001 keeps an existing one).
SUPABASE_DEFAULTS = """
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
CREATE FUNCTION public.is_admin_user() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('request.jwt.claims', true)::jsonb -> 'app_metadata' ->> 'role' = 'admin', false)
$$;
"""


TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1
"""
SEQUENCES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'S' ORDER BY 1
"""
# Functions that matter: the trigger functions (007 revokes them) and any SECURITY DEFINER one, which would run
# with its owner's rights for whoever may call it (Supabase exposes public functions as RPC). A SECURITY INVOKER
# function reaches only what its caller may. is_admin_user() is the project's own (Supabase) or the stand-in of
# 001: every policy calls it as the session's role, so it stays executable.
FUNCTIONS = """
SELECT p.oid::regprocedure::text AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.proname <> 'is_admin_user'
  AND (p.prosecdef OR p.prorettype = 'trigger'::regtype) ORDER BY 1
"""

OUTSIDERS = ("anon", "authenticated")
REFUSED = asyncpg.InsufficientPrivilegeError


async def _snapshot(conn: asyncpg.Connection) -> dict[str, str]:
    """Every row of every table, as text: equal before and after means nothing changed."""
    return {
        t: await conn.fetchval(f"SELECT coalesce(string_agg(x::text, ',' ORDER BY x::text), '') FROM {t} x")
        for t in [r["relname"] for r in await conn.fetch(TABLES)]
    }


@pytest.fixture
async def supabase_like(empty_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A fresh database with Supabase's default grants set BEFORE the migrations ran, seeded with a row in
    every table."""
    conn = await db.connect(empty_database_url)
    try:
        await conn.execute(CREATE_ROLES)
        await conn.execute(SUPABASE_DEFAULTS)
        await migrate(conn)
        await conn.execute(SEED_EVERY_TABLE)
        for table in [r["relname"] for r in await conn.fetch(TABLES)]:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") >= 1, table
        yield conn
    finally:
        await conn.close()


async def test_anon_and_authenticated_can_neither_read_nor_change_any_table_under_supabase_default_grants(
    supabase_like: asyncpg.Connection,
) -> None:
    conn = supabase_like
    tables = [r["relname"] for r in await conn.fetch(TABLES)]
    assert "worker_migrations" in tables and "job_queue" in tables
    rows = {t: await conn.fetchval(f"SELECT to_jsonb(x)::text FROM {t} x LIMIT 1") for t in tables}
    before = await _snapshot(conn)
    allowed: list[str] = []  # what an outsider managed to do: must stay empty
    for role in OUTSIDERS:
        for table in tables:
            column = await conn.fetchval(
                "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
                "AND NOT attisdropped AND attidentity = '' AND attgenerated = '' ORDER BY attnum LIMIT 1", table,
            )
            await conn.execute(f"SET ROLE {role}")
            try:
                await _try(conn, allowed, role, table, f"SELECT count(*) FROM {table}", "0")
                await _try(conn, allowed, role, table, f"UPDATE {table} SET {column} = {column}", "UPDATE 0")
                await _try(conn, allowed, role, table, f"DELETE FROM {table}", "DELETE 0")
                # a copy of an existing row: refused by a grant or by a policy before any unique index
                await _try(conn, allowed, role, table,
                           f"INSERT INTO {table} OVERRIDING SYSTEM VALUE "
                           f"SELECT * FROM jsonb_populate_record(NULL::{table}, '{rows[table]}'::jsonb)", None)
                await _try(conn, allowed, role, table, f"TRUNCATE {table}", None)  # not subject to RLS
            finally:
                await conn.execute("RESET ROLE")
    assert not allowed, "\n".join(allowed)
    assert await _snapshot(conn) == before
    versions = [r["version"] for r in await conn.fetch("SELECT version FROM worker_migrations ORDER BY 1")]
    assert versions == [v for v, _, _ in migration_files()]


async def _try(conn: asyncpg.Connection, allowed: list[str], role: str, table: str, sql: str,
               harmless: str | None) -> None:
    """Run `sql` as the current role (committed, so that the caller's snapshot sees what it did): refused
    (42501), or its answer is `harmless` (nothing seen, nothing changed). Anything else goes to `allowed`."""
    try:
        async with conn.transaction():
            answer = str(await conn.fetchval(sql) if sql.startswith("SELECT") else await conn.execute(sql))
    except REFUSED:
        return
    except asyncpg.PostgresError as exc:
        allowed.append(f"{role}: {sql[:60]}: {type(exc).__name__}: {exc}")
        return
    if answer != harmless:
        allowed.append(f"{role}: {sql[:60]}: {answer}")


async def test_anon_and_authenticated_can_use_no_sequence_and_call_no_function_of_the_worker(
    supabase_like: asyncpg.Connection,
) -> None:
    conn = supabase_like
    sequences = [r["relname"] for r in await conn.fetch(SEQUENCES)]
    functions = [r["signature"] for r in await conn.fetch(FUNCTIONS)]
    assert sequences and functions
    allowed = [
        f"{role}: {privilege} on {name}"
        for role in OUTSIDERS
        for name in sequences
        for privilege in ("USAGE", "SELECT", "UPDATE")
        if await conn.fetchval("SELECT has_sequence_privilege($1, $2, $3)", role, name, privilege)
    ] + [
        f"{role}: EXECUTE on {signature}"
        for role in OUTSIDERS
        for signature in functions
        if await conn.fetchval("SELECT has_function_privilege($1, $2, 'EXECUTE')", role, signature)
    ]
    assert not allowed, "\n".join(allowed)
    await conn.execute("SET ROLE anon")
    try:
        for name in sequences:  # setval on job_runs' identity would make every later finish fail
            with pytest.raises(REFUSED):
                await conn.fetchval(f"SELECT setval('{name}', 1)")
    finally:
        await conn.execute("RESET ROLE")


async def test_the_admin_rule_and_service_role_still_reach_the_queue_under_supabase_default_grants(
    supabase_like: asyncpg.Connection,
) -> None:
    """An admin request (authenticated, with the admin claim) reads and writes jobs through the default grants
    and the admin policies; the same role without the claim sees nothing; neither touches worker_migrations.
    service_role enqueues (the NOTIFY and input triggers still fire) and reads the schema version."""
    conn = supabase_like
    claims = json.dumps({"app_metadata": {"role": "admin"}})
    await conn.execute("SET ROLE authenticated")
    try:
        assert await conn.fetchval("SELECT count(*) FROM job_queue") == 0
        await conn.execute("SELECT set_config('request.jwt.claims', $1, false)", claims)
        assert await conn.fetchval("SELECT public.is_admin_user()")
        assert await conn.fetchval("SELECT count(*) FROM job_queue") == 1
        await conn.execute("INSERT INTO job_queue (task_type) VALUES ('noop')")
        assert await conn.execute("UPDATE job_queue SET priority = 1") == "UPDATE 2"
        with pytest.raises(REFUSED):
            await conn.execute("DELETE FROM worker_migrations")
        with pytest.raises(REFUSED):
            await conn.execute("TRUNCATE job_queue")
    finally:
        await conn.execute("RESET ROLE")
        await conn.execute("SELECT set_config('request.jwt.claims', '', false)")
    await conn.execute("SET ROLE service_role")
    try:
        await conn.execute("INSERT INTO job_queue (task_type) VALUES ('noop')")
        with pytest.raises(asyncpg.CheckViolationError):  # the input trigger runs for service_role
            await conn.execute("INSERT INTO job_queue (task_type) VALUES ('Not A Type')")
        assert await conn.fetchval("SELECT max(version) FROM worker_migrations") == migration_files()[-1][0]
    finally:
        await conn.execute("RESET ROLE")
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 3


async def test_every_table_of_the_migrated_schema_has_row_level_security_and_grants_nothing_to_public(
    conn: asyncpg.Connection,
) -> None:
    """The plain-PostgreSQL side of the same rule, on the suite's migrated database: a table without RLS is
    open to whoever the database's defaults grant it to."""
    without_rls = [
        r["relname"] for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity ORDER BY 1"
        )
    ]
    assert without_rls == []
    to_public = await conn.fetch(
        "SELECT c.relname, a.privilege_type FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
        "aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S') AND a.grantee = 0"
    )
    assert [tuple(r) for r in to_public] == []
