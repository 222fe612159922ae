"""The worker behind a real pgbouncer in transaction mode (Debian's `pgbouncer`), as with Supabase's pooler.

Work goes through the pooled URL with the statement cache off; LISTEN uses the direct URL, or nothing at all in
poll-only mode. Every job runs exactly once, retries included.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.conftest import SERVER_URL
from tests.support.daemon import make_settings, running_daemon, wait_for
from worker import db, queue
from worker.builtin import default_registry
from worker.cli.pgcluster import free_port
from worker.queue import NewJob
from worker.runtime.daemon import Daemon
from worker.service import create_work_pool
from worker.settings import Settings

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture(scope="module")
def pgbouncer_port() -> Iterator[int]:
    """A pgbouncer in transaction mode in front of the test server, on a free port."""
    if not Path(PGBOUNCER).exists():
        pytest.fail("pgbouncer is not installed: apt-get install pgbouncer")
    server = urlsplit(SERVER_URL)
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="worker-pgbouncer-"))
    (root / "users.txt").write_text(f'"{server.username or "postgres"}" ""\n')
    (root / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.hostname or '127.0.0.1'} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {root / 'users.txt'}\n"
        "pool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 20\n"
        f"logfile = {root / 'pgbouncer.log'}\npidfile = {root / 'pgbouncer.pid'}\n"
    )
    cmd = [PGBOUNCER, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        entry = pwd.getpwnam("postgres")
        for path in (root, *root.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    output = root / "stdout.log"
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pgbouncer did not start: {output.read_text(errors='replace')[-500:]}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _pooled(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}"))


@contextlib.asynccontextmanager
async def _daemon_as_served(settings: Settings) -> AsyncIterator[Daemon]:
    """The daemon with the work pool `worker run` builds from these settings."""
    pool = await create_work_pool(settings)
    try:
        async with running_daemon(settings, default_registry(settings), pool=pool) as daemon:
            yield daemon
    finally:
        await pool.close()


async def _enqueue_mix(conn: asyncpg.Connection, n_ok: int, n_failing: int) -> None:
    jobs = [NewJob("noop") for _ in range(n_ok)]
    jobs += [NewJob("noop", {"fail": "boom"}, max_attempts=2) for _ in range(n_failing)]
    await queue.enqueue_many(conn, jobs)


async def _all_finished(conn: asyncpg.Connection) -> bool:
    left = await conn.fetchval("SELECT count(*) FROM job_queue WHERE status NOT IN ('succeeded', 'failed')")
    return bool(left == 0)


async def _assert_each_job_ran_as_often_as_it_should(conn: asyncpg.Connection, n_ok: int, n_failing: int) -> None:
    by_status = dict(await conn.fetch("SELECT status, count(*) FROM job_queue GROUP BY status"))
    assert by_status == {k: v for k, v in {"succeeded": n_ok, "failed": n_failing}.items() if v}
    runs = await conn.fetch(
        "SELECT q.status, count(r.id) AS runs, count(DISTINCT r.attempt) AS attempts "
        "FROM job_queue q LEFT JOIN job_runs r ON r.job_id = q.id GROUP BY q.id, q.status"
    )
    for row in runs:
        expected = 1 if row["status"] == "succeeded" else 2
        assert row["runs"] == expected == row["attempts"], dict(row)


async def test_transaction_pool_url_with_listen_on_the_direct_url_runs_every_job_once(
    database_url: str, conn: asyncpg.Connection, pgbouncer_port: int
) -> None:
    n_ok, n_failing = 150, 10
    common = dict(
        listen_database_url=database_url, statement_cache=False, concurrency=20, db_pool_size=8,
        poll_interval_s=60.0,
    )
    first = make_settings(_pooled(database_url, pgbouncer_port), worker_id="pooled-a", **common)
    second = make_settings(_pooled(database_url, pgbouncer_port), worker_id="pooled-b", **common)
    async with _daemon_as_served(first) as a, _daemon_as_served(second) as b:
        assert a.listener is not None and b.listener is not None
        await wait_for(lambda: _listening(a, b))
        # Inserted after start: with a 60 s poll, only the NOTIFY on the direct URL can wake them this soon.
        await _enqueue_mix(conn, n_ok, n_failing)
        await wait_for(lambda: _all_finished(conn), timeout_s=30)
    await _assert_each_job_ran_as_often_as_it_should(conn, n_ok, n_failing)
    workers = {r["worker_id"] for r in await conn.fetch("SELECT DISTINCT worker_id FROM job_runs")}
    assert workers <= {"pooled-a", "pooled-b"}


async def _listening(*daemons: Daemon) -> bool:
    return all(d.listener is not None and d.listener.state.connected for d in daemons)


async def test_poll_only_mode_through_the_transaction_pool_runs_every_job_once(
    database_url: str, conn: asyncpg.Connection, pgbouncer_port: int
) -> None:
    n_ok, n_failing = 60, 5
    settings = make_settings(
        _pooled(database_url, pgbouncer_port), listen_enabled=False, statement_cache=False,
        poll_interval_s=0.2, concurrency=10, db_pool_size=5,
    )
    async with _daemon_as_served(settings) as daemon:
        assert daemon.listener is None
        await _enqueue_mix(conn, n_ok, n_failing)
        await wait_for(lambda: _all_finished(conn), timeout_s=30)
    await _assert_each_job_ran_as_often_as_it_should(conn, n_ok, n_failing)
    listening = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'worker-listener'"
    )
    assert listening == 0


async def test_pooled_work_connections_keep_the_statement_timeout(
    database_url: str, pgbouncer_port: int
) -> None:
    settings = make_settings(_pooled(database_url, pgbouncer_port), statement_cache=False,
                             db_statement_timeout_s=0.5)
    pool = await db.create_pool(settings.dsn, statement_cache=False,
                                statement_timeout_s=settings.db_statement_timeout_s)
    try:
        assert await pool.fetchval("SELECT $1::int + 1", 1) == 2
        with pytest.raises((asyncpg.QueryCanceledError, TimeoutError)):
            await pool.execute("SELECT pg_sleep(5)")
    finally:
        await pool.close()
