"""Dirty faults on the work connection, against `worker run` processes behind a TCP proxy (tests/support/tcpproxy.py):

* a black-holed work connection in poll mode (no LISTEN, as behind a pooler): the daemon's own queries have a
  client-side deadline, the hung connection is discarded, and a job inserted after the path heals runs within
  seconds; meanwhile /readyz names the fetch loop that cannot claim;
* SIGTERM while the database is unreachable: the process ends within the grace period plus the daemon's bounded
  hand-back (SHUTDOWN_WRITE_S) and pool close (POOL_CLOSE_S), with exit code 0.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.support.daemon import wait_for
from tests.support.procs import WorkerProcess, worker_env
from tests.support.rows import status_of
from tests.support.tcpproxy import TcpProxy
from worker.runtime.stopping import SHUTDOWN_WRITE_S
from worker.service import POOL_CLOSE_S

HTTP = {"WORKER_HTTP_ENABLED": "true", "WORKER_HTTP_HOST": "127.0.0.1", "WORKER_HTTP_PORT": "0"}


async def _insert(conn: asyncpg.Connection, sleep_s: float = 0.0) -> uuid.UUID:
    payload = {"sleep_s": sleep_s} if sleep_s else {}
    return await conn.fetchval("INSERT INTO job_queue (task_type, payload) VALUES ('noop', $1) RETURNING id", payload)


@contextlib.asynccontextmanager
async def _client(proc: WorkerProcess) -> AsyncIterator[httpx.AsyncClient]:
    port = await proc.http_port()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client


async def _readyz(client: httpx.AsyncClient) -> tuple[int, dict[str, object]]:
    try:
        r = await client.get("/readyz")
    except httpx.HTTPError:
        return 0, {}
    return r.status_code, r.json()


@pytest.mark.slow
async def test_a_black_holed_work_connection_in_poll_mode_is_discarded_and_jobs_run_after_the_path_heals(
    database_url: str, conn: asyncpg.Connection
) -> None:
    env = {
        **HTTP, "WORKER_LISTEN_ENABLED": "false", "WORKER_POLL_INTERVAL_S": "1", "WORKER_DB_CALL_TIMEOUT_S": "2",
        "WORKER_DB_STATEMENT_TIMEOUT_S": "30", "WORKER_LEASE_S": "10",
    }
    with TcpProxy() as proxy:
        proc = WorkerProcess(worker_env(proxy.url(database_url), **env), name="blackhole-poll")
        try:
            async with _client(proc) as client:

                async def ready() -> bool:
                    return (await _readyz(client))[0] == 200

                await wait_for(ready, timeout_s=20)
                first = await _insert(conn)
                await wait_for(lambda: _is(conn, first, "succeeded"), timeout_s=10)

                proxy.blackhole()  # the pool's connections go silent; new ones too, until healed
                seen: dict[str, object] = {}

                async def fetcher_named() -> bool:
                    code, body = await _readyz(client)
                    seen.update(body)
                    return code == 503 and "fetcher" in body.get("failing", [])  # type: ignore[operator]

                await wait_for(fetcher_named, timeout_s=15, interval_s=0.2)
                assert proc.alive, proc.output[-3000:]
                proxy.heal()  # the black-holed connections stay dead: only new ones work
                healed = time.monotonic()
                after = await _insert(conn)
                await wait_for(lambda: _is(conn, after, "succeeded"), timeout_s=20)
                ran_in = time.monotonic() - healed
                await wait_for(ready, timeout_s=10)
                assert proc.named("fetch.database_unavailable")
                assert await conn.fetchval("SELECT count(*) FROM job_queue WHERE status = 'failed'") == 0
                print(f"\nthe job inserted after healing ran {ran_in:.2f}s later; /readyz said {seen.get('checks')}")
        finally:
            proc.terminate()
            await proc.wait_exit(timeout_s=30)
            proc.cleanup()


async def _is(conn: asyncpg.Connection, job_id: uuid.UUID, status: str) -> bool:
    return await status_of(conn, job_id) == status


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["blackhole", "refuse"])
async def test_sigterm_during_an_outage_ends_within_the_grace_period_plus_the_bounded_hand_back(
    fault: str, database_url: str, conn: asyncpg.Connection
) -> None:
    grace_s = 2.0
    env = {**HTTP, "WORKER_SHUTDOWN_GRACE_S": str(grace_s), "WORKER_LEASE_S": "30", "WORKER_DB_CONNECT_TIMEOUT_S": "5"}
    with TcpProxy() as proxy:
        proc = WorkerProcess(worker_env(proxy.url(database_url), **env), name=f"stop-{fault}")
        try:
            await proc.wait_event("listener.listening")
            job = await _insert(conn, sleep_s=60)
            await proc.wait_event("job.claimed", job_id=str(job))
            proxy.set_mode(fault)  # type: ignore[arg-type]
            stopped = time.monotonic()
            proc.terminate()
            bound_s = grace_s + SHUTDOWN_WRITE_S + POOL_CLOSE_S + 3.0
            code = await proc.wait_exit(timeout_s=bound_s)
            took_s = time.monotonic() - stopped
            assert code == 0, proc.output[-3000:]
            assert proc.named("job.interrupted", job_id=str(job))
            assert proc.named("shutdown.unrecorded")  # said, not silently lost: its lease will expire
            print(f"\n{fault}: stopped in {took_s:.2f}s (grace {grace_s:g}s, bound {bound_s:g}s)")
        finally:
            proc.cleanup()
    # The job is still `running` under the dead worker's lease; recovery puts it back when the lease expires.
    assert await status_of(conn, job) == "running"
