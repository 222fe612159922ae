"""The database going away under a running `worker run` process.

The daemon connects THROUGH a TCP proxy (tests/support/tcpproxy.py) that drops every connection, black-holes them, or
refuses new ones; the test's own connection goes straight to the server. Whatever the fault: /readyz turns 503
within a few seconds, the process never exits, no job is marked failed for want of a database, jobs inserted
during the outage run after it, and LISTEN is back after it (a job inserted once ready starts at once although
the poll is 60 s). Also: every backend of the daemon terminated by pg_terminate_backend while jobs run.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.support.daemon import wait_for
from tests.support.procs import WorkerProcess, worker_env
from tests.support.tcpproxy import Mode, TcpProxy

OUTAGE_S = 3.0
# Poll and lease-recovery sweep (which also claims) far beyond the test: only NOTIFY (or the listener's
# wake-up on reconnecting) makes the daemon fetch.
ENV = {
    "WORKER_HTTP_ENABLED": "true",
    "WORKER_HTTP_HOST": "127.0.0.1",
    "WORKER_HTTP_PORT": "0",
    "WORKER_POLL_INTERVAL_S": "60",
    "WORKER_RECOVERY_INTERVAL_S": "60",
    "WORKER_LEASE_S": "5",
    "WORKER_DB_STATEMENT_TIMEOUT_S": "3",
}


async def _insert(conn: asyncpg.Connection, sleep_s: float = 0.0) -> uuid.UUID:
    payload = {"sleep_s": sleep_s} if sleep_s else {}
    return await conn.fetchval(
        "INSERT INTO job_queue (task_type, payload) VALUES ('noop', $1) RETURNING id", payload
    )


async def _ready(client: httpx.AsyncClient) -> int:
    try:
        return (await client.get("/readyz")).status_code
    except httpx.HTTPError:
        return 0


@contextlib.asynccontextmanager
async def _client(proc: WorkerProcess) -> AsyncIterator[httpx.AsyncClient]:
    port = await proc.http_port()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        yield client


async def _assert_nothing_failed(conn: asyncpg.Connection, proc: WorkerProcess) -> None:
    assert proc.alive, proc.output[-4000:]
    assert await conn.fetchval("SELECT count(*) FROM job_queue WHERE status = 'failed'") == 0
    assert await conn.fetchval("SELECT count(*) FROM job_runs WHERE outcome IN ('failed', 'retry')") == 0
    assert not proc.named("daemon.loop_crashed") and not proc.named("daemon.loop_exited")
    health = proc.named("daemon.stopping")
    assert not health, health


async def _starts_without_the_poll(conn: asyncpg.Connection) -> float:
    """Insert a job and return how long it took to start; the poll (60 s) cannot be what started it."""
    job_id = await _insert(conn)

    async def done() -> bool:
        return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job_id) == "succeeded"

    return await wait_for(done, timeout_s=10)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["drop", "blackhole", "refuse"])
async def test_the_daemon_rides_out_a_cut_database_path_and_resumes_with_listen(
    fault: Mode, database_url: str, conn: asyncpg.Connection
) -> None:
    with TcpProxy() as proxy:
        proc = WorkerProcess(worker_env(proxy.url(database_url), **ENV), name=f"cut-{fault}")
        try:
            async with _client(proc) as client:
                await wait_for(lambda: _is(client, 200), timeout_s=20)
                await _starts_without_the_poll(conn)  # LISTEN works before the fault
                running = await _insert(conn, sleep_s=1.0)
                await proc.wait_event("job.claimed", job_id=str(running))

                cut = time.monotonic()
                proxy.set_mode(fault)
                await wait_for(lambda: _is(client, 503), timeout_s=10)
                not_ready_after = time.monotonic() - cut
                during = [await _insert(conn) for _ in range(3)]
                await _sleep_until(cut + OUTAGE_S)
                assert proc.alive, proc.output[-4000:]
                assert await _is(client, 503)
                assert await conn.fetchval(
                    "SELECT count(*) FROM job_queue WHERE id = ANY($1::uuid[]) AND status = 'pending'", during
                ) == 3

                proxy.heal()
                healed = time.monotonic()
                await wait_for(lambda: _is(client, 200), timeout_s=20, interval_s=0.05)
                reconnect_s = time.monotonic() - healed

                async def all_done() -> bool:
                    return await conn.fetchval(
                        "SELECT count(*) FROM job_queue WHERE id = ANY($1::uuid[]) AND status = 'succeeded'",
                        [running, *during],
                    ) == 4

                await wait_for(all_done, timeout_s=15)
                started_in = await _starts_without_the_poll(conn)
                await _assert_nothing_failed(conn, proc)
                metrics = (await client.get("/metrics")).text
                reconnects = re.search(r"^worker_listener_reconnects_total (\S+)$", metrics, re.M)
                assert reconnects is not None and float(reconnects.group(1)) >= 1
                assert proc.named("listener.reconnected")
                print(
                    f"\n{fault}: /readyz 503 after {not_ready_after:.2f}s; ready again {reconnect_s:.2f}s after "
                    f"the path healed; a new job then ran in {started_in:.2f}s (poll 60s)"
                )
        finally:
            proc.cleanup()


@pytest.mark.slow
async def test_every_backend_of_the_daemon_terminated_while_jobs_run(
    database_url: str, conn: asyncpg.Connection
) -> None:
    proc = WorkerProcess(worker_env(database_url, **ENV), name="terminated")
    try:
        async with _client(proc) as client:
            await wait_for(lambda: _is(client, 200), timeout_s=20)
            running = [await _insert(conn, sleep_s=1.5) for _ in range(3)]
            for job_id in running:
                await proc.wait_event("job.claimed", job_id=str(job_id))
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE 'worker%'"
            )
            assert killed >= 2  # the LISTEN connection and at least one pool connection
            during = [await _insert(conn) for _ in range(3)]
            await proc.wait_event("listener.reconnected", timeout_s=15)
            await wait_for(lambda: _is(client, 200), timeout_s=15)

            async def all_done() -> bool:
                return await conn.fetchval(
                    "SELECT count(*) FROM job_queue WHERE id = ANY($1::uuid[]) AND status = 'succeeded'",
                    [*running, *during],
                ) == 6

            await wait_for(all_done, timeout_s=20)
            started_in = await _starts_without_the_poll(conn)
            await _assert_nothing_failed(conn, proc)
            print(f"\npg_terminate_backend x{killed}: a new job then ran in {started_in:.2f}s (poll 60s)")
    finally:
        proc.cleanup()


async def _is(client: httpx.AsyncClient, status: int) -> bool:
    return await _ready(client) == status


async def _sleep_until(moment: float) -> None:
    import anyio

    await anyio.sleep(max(0.0, moment - time.monotonic()))


@pytest.mark.slow
async def test_a_worker_cut_off_by_a_black_hole_stops_its_job_before_another_worker_takes_it_over(
    database_url: str, conn: asyncpg.Connection
) -> None:
    """Self-fencing: the cut-off worker cannot renew its lease, so it must give the attempt up before the lease
    runs out and a healthy worker (straight to the server) recovers the job; the two attempts never overlap."""
    fast = {"WORKER_LEASE_S": "2", "WORKER_RECOVERY_INTERVAL_S": "0.5"}
    with TcpProxy() as proxy:
        cut = WorkerProcess(worker_env(proxy.url(database_url), **fast), name="cut-off")
        healthy: WorkerProcess | None = None
        try:
            await cut.wait_event("listener.listening")
            job_id = await _insert(conn, sleep_s=6.0)
            await cut.wait_event("job.claimed", job_id=str(job_id))
            healthy = WorkerProcess(worker_env(database_url, **fast), name="healthy")
            proxy.blackhole()
            taken = await healthy.wait_event("job.claimed", job_id=str(job_id), timeout_s=15)
            lost = await cut.wait_event("job.lease_lost", job_id=str(job_id), timeout_s=5)
            assert lost["timestamp"] < taken["timestamp"], (lost, taken)
            assert cut.alive

            async def succeeded() -> bool:
                return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job_id) == "succeeded"

            await wait_for(succeeded, timeout_s=15)
        finally:
            cut.cleanup()
            if healthy is not None:
                healthy.cleanup()
    runs = await conn.fetch("SELECT worker_id, outcome FROM job_runs WHERE job_id = $1 ORDER BY attempt", job_id)
    assert [(r["worker_id"], r["outcome"]) for r in runs] == [("cut-off", "abandoned"), ("healthy", "succeeded")]
