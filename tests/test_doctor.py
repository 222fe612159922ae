"""`worker doctor`: every check against a real database, in the state that passes it and the one that fails it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg

from tests.support.daemon import make_settings
from tests.support.rows import make_job
from worker import operations
from worker.builtin import default_registry
from worker.cli.doctor import Check, failed, run_checks
from worker.schedules import schedules_of
from worker.task_policy import apply_overrides

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nothing"


async def checks(database_url: str, url: str | None = None, **overrides: Any) -> dict[str, Check]:
    settings = make_settings(database_url, schedules_enabled=True, **overrides)
    return {c.name: c for c in await run_checks(settings, default_registry(settings), url=url)}


async def test_a_fresh_database_passes_every_check(database_url: str) -> None:
    got = await checks(database_url, schedule_cleanup="", schedule_game_platform_sync="")
    conn = await asyncpg.connect(database_url)
    try:  # the shared test server runs with autovacuum = off: that is a warning (tests/test_maintenance.py)
        autovacuum = "pass" if await conn.fetchval("SELECT current_setting('autovacuum')::boolean") else "warn"
    finally:
        await conn.close()
    assert {n: c.status for n, c in got.items()} == {
        "database": "pass", "migrations": "pass", "notify": "pass", "expired_leases": "pass",
        "oldest_pending": "pass", "failures_last_hour": "pass", "paused": "pass", "schedules": "pass",
        "autovacuum": autovacuum,
        "live_workers": "pass",
    }
    assert "ms" in got["notify"].figure and not failed(list(got.values()))


async def test_an_unreachable_database_fails(database_url: str) -> None:
    settings = make_settings(UNREACHABLE)
    got = await run_checks(settings, default_registry(settings))
    assert [(c.name, c.status) for c in got] == [("database", "fail")] and failed(got)


async def test_a_missing_migration_fails(empty_database_url: str) -> None:
    got = await checks(empty_database_url)
    assert got["migrations"].status == "fail" and "001" in got["migrations"].figure
    assert "expired_leases" not in got  # queue checks need the schema


async def test_notify_fails_when_the_listen_url_does_not_answer(database_url: str) -> None:
    got = await checks(database_url, listen_database_url=UNREACHABLE)
    assert got["notify"].status == "fail" and got["database"].status == "pass"


async def test_expired_leases_fail_when_nobody_recovers_them(database_url: str, conn: asyncpg.Connection) -> None:
    job = await make_job(conn, status="running")
    assert (await checks(database_url))["expired_leases"].status == "pass"
    await conn.execute("UPDATE job_queue SET locked_until = now() - interval '1 hour' WHERE id = $1", job)
    got = (await checks(database_url))["expired_leases"]
    assert got.status == "fail" and got.figure.startswith("1 running past their lease")


async def test_an_old_due_pending_job_fails_unless_its_type_is_paused(database_url: str,
                                                                      conn: asyncpg.Connection) -> None:
    await make_job(conn, status="pending", age_s=3600)
    got = (await checks(database_url))["oldest_pending"]
    assert got.status == "fail" and "1 due" in got.figure
    await operations.pause(conn, "noop")
    assert (await checks(database_url))["oldest_pending"].status == "pass"


async def test_permanent_failures_in_the_last_hour_fail(database_url: str, conn: asyncpg.Connection) -> None:
    await make_job(conn, status="failed", age_s=2 * 3600, error="old")  # outside the hour
    assert (await checks(database_url))["failures_last_hour"].status == "pass"
    await make_job(conn, status="failed", age_s=60, error="boom")
    got = (await checks(database_url))["failures_last_hour"]
    assert got.status == "fail" and got.figure == "noop: 1 failed, 0 retried"


async def test_paused_task_types_are_reported(database_url: str, conn: asyncpg.Connection) -> None:
    await operations.pause(conn, "noop")
    await operations.pause(conn)
    got = (await checks(database_url))["paused"]
    assert got.status == "warn" and got.figure == "all task types, noop"


async def test_schedules_fail_when_a_slot_was_missed_and_pass_when_current(
    database_url: str, conn: asyncpg.Connection
) -> None:
    # An hourly cron whose latest slot is half an hour old, so the doctor's grace period after a slot (in which
    # a missing enqueue is not yet a failure) never overlaps this test, whatever the time of day.
    cron = f"{(datetime.now(UTC).minute + 30) % 60} * * * *"
    overrides = {"schedule_game_platform_sync": "", "schedule_cleanup": cron}
    settings = make_settings(database_url, **overrides)
    cleanup = next(s for s in schedules_of(apply_overrides(default_registry(), settings)) if s.name == "cleanup")
    insert = ("INSERT INTO job_queue_schedule (name, cron, task_type, last_slot, last_enqueued_at) "
              "VALUES ('cleanup', $1, 'cleanup', $2, now())")
    await conn.execute(insert, cleanup.cron, cleanup.latest_slot(datetime.now(UTC)))
    assert (await checks(database_url, **overrides))["schedules"].status == "pass"
    await conn.execute("UPDATE job_queue_schedule SET last_slot = last_slot - interval '3 days'")
    got = (await checks(database_url, **overrides))["schedules"]
    assert got.status == "fail" and "missed slot" in got.figure


CRON_SCHEMA = """
CREATE SCHEMA cron;
CREATE TABLE cron.job (jobid bigserial PRIMARY KEY, schedule text, command text, nodename text, nodeport int,
                       database text, username text, active boolean DEFAULT true, jobname text);
CREATE TABLE cron.job_run_details (jobid bigint, runid bigserial, job_pid int, database text, username text,
                                   command text, status text, return_message text, start_time timestamptz,
                                   end_time timestamptz);
"""

NET_SCHEMA = """
CREATE SCHEMA net;
CREATE TABLE net.http_request_queue (id bigserial, method text, url text, headers jsonb, body bytea,
                                     timeout_milliseconds int);
CREATE TABLE net._http_response (id bigint, status_code int, content_type text, headers jsonb, content text,
                                 timed_out boolean, error_msg text, created timestamptz DEFAULT now());
"""


async def test_pg_cron_is_checked_only_where_it_exists_and_fails_on_a_failed_last_run(
    database_url: str, conn: asyncpg.Connection
) -> None:
    assert "pg_cron" not in await checks(database_url)
    await conn.execute(CRON_SCHEMA)
    await conn.execute("INSERT INTO cron.job (jobid, schedule, command, jobname) VALUES (1, '* * * * *', 'x', 'a')")
    await conn.execute("INSERT INTO cron.job_run_details (jobid, status, start_time) "
                       "VALUES (1, 'failed', now() - interval '2 minutes'), (1, 'succeeded', now())")
    assert (await checks(database_url))["pg_cron"].status == "pass"
    await conn.execute("INSERT INTO cron.job_run_details (jobid, status, return_message, start_time) "
                       "VALUES (1, 'failed', 'ERROR: relation missing', now() + interval '1 second')")
    got = (await checks(database_url))["pg_cron"]
    assert got.status == "fail" and "relation missing" in got.detail


async def test_pg_net_is_checked_only_where_it_exists_and_fails_on_recent_errors(
    database_url: str, conn: asyncpg.Connection
) -> None:
    assert "pg_net" not in await checks(database_url)
    await conn.execute(NET_SCHEMA)
    await conn.execute("INSERT INTO net._http_response (id, status_code, timed_out) VALUES (1, 200, false)")
    assert (await checks(database_url))["pg_net"].status == "pass"
    await conn.execute("INSERT INTO net._http_response (id, status_code, timed_out, error_msg) "
                       "VALUES (2, NULL, false, 'Couldn''t connect to server')")
    got = (await checks(database_url))["pg_net"]
    assert got.status == "fail" and "1 errors" in got.figure and "connect" in got.detail


@contextlib.asynccontextmanager
async def http_server(status: int) -> AsyncIterator[str]:
    """A loopback HTTP server answering every request with `status`."""

    async def handle(stream: Any) -> None:
        async with stream:
            await stream.receive(65536)
            reason = b"OK" if status == 200 else b"Service Unavailable"
            await stream.send(b"HTTP/1.1 %d %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok" % (status, reason))

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            tg.cancel_scope.cancel()


async def test_readyz_passes_on_200_and_fails_otherwise(database_url: str) -> None:
    async with http_server(200) as url:
        assert (await checks(database_url, url=url))["readyz"].status == "pass"
    async with http_server(503) as url:
        got = (await checks(database_url, url=url))["readyz"]
        assert got.status == "fail" and "503" in got.figure
    got = (await checks(database_url, url="http://127.0.0.1:1"))["readyz"]
    assert got.status == "fail" and got.figure == "unreachable"
