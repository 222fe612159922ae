"""`POST /api/jobs/run` (real worker processes, the database path through tests/support/tcpproxy.py) never runs an
attempt that overlaps another: with WORKER_RUN_BUDGET_S larger than WORKER_LEASE_S, when the run's database path is cut
(reset or black-holed) past the lease and a second daemon recovers the job, or when the job is cancelled and
retried while the run holds it, the first attempt has really stopped (its handler's own record) before the next
one starts, and the ledger (job_runs) says so: its times are true and its attempts do not overlap."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import asyncpg
import httpx
import pytest

from tests.support.daemon import wait_for
from tests.support.marked_task import marks
from tests.support.procs import WorkerProcess, worker_env
from tests.support.tcpproxy import TcpProxy
from worker import queue

LEASE_S = 3.0
SECRET = "runner-secret-fencing-5d1e"
DUE_IN_S = 2.0


def _env(database_url: str, marked_file: Path, **extra: str) -> dict[str, str]:
    return worker_env(
        database_url, MARKED_FILE=str(marked_file), WORKER_TASK_MODULES="tests.support.marked_task:tasks",
        WORKER_LEASE_S=str(LEASE_S), WORKER_DB_CALL_TIMEOUT_S="2", **extra,
    )


@contextmanager
def _processes(database_url: str, proxy: TcpProxy, marked_file: Path) -> Iterator[WorkerProcess]:
    """The HTTP worker (through the proxy, its own fetch loop idle: LISTEN off, a long poll)."""
    http = WorkerProcess(_env(
        proxy.url(database_url), marked_file, WORKER_HTTP_ENABLED="true", WORKER_HTTP_PORT="0",
        JOB_QUEUE_RUNNER_SECRET=SECRET, WORKER_RUN_BUDGET_S="60", WORKER_LISTEN_ENABLED="false",
        WORKER_POLL_INTERVAL_S="120", WORKER_RECOVERY_INTERVAL_S="120",
    ), name="http")
    try:
        yield http
    finally:
        http.cleanup()


async def _start_run(port: int, tg: anyio.abc.TaskGroup, answers: list[httpx.Response | BaseException]) -> None:
    async def post() -> None:
        try:
            async with httpx.AsyncClient(timeout=60) as client:
                answers.append(await client.post(f"http://127.0.0.1:{port}/api/jobs/run",
                                                 headers={"Authorization": f"Bearer {SECRET}"}))
        except httpx.HTTPError as exc:
            answers.append(exc)

    tg.start_soon(post)


async def _enqueue_after_first_fetch(conn: asyncpg.Connection) -> queue.Enqueued:
    """A job due only once the HTTP worker's own fetch loop (LISTEN off, a 120 s poll) has made its first claim:
    only the /api/jobs/run call takes it."""
    job = await queue.enqueue(conn, queue.NewJob("marked", {"sleep_s": 40},
                                                 run_at=datetime.now(UTC) + timedelta(seconds=DUE_IN_S)))
    await anyio.sleep(DUE_IN_S + 0.1)
    return job


async def _held_by_http(conn: asyncpg.Connection, job_id: uuid.UUID) -> None:
    async def held() -> bool:
        return bool(await conn.fetchval("SELECT locked_by FROM job_queue WHERE id = $1", job_id) == "http/http")

    await wait_for(held, timeout_s=20)


async def _second_attempt_done(conn: asyncpg.Connection, job_id: uuid.UUID, timeout_s: float) -> None:
    async def done() -> bool:
        return bool(await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job_id) == "succeeded")

    await wait_for(done, timeout_s=timeout_s)


def _assert_no_overlap(marked_file: Path, ledger: list[asyncpg.Record]) -> None:
    real = marks(str(marked_file))
    by_attempt = {r["attempt"]: r for r in ledger}
    assert sorted(by_attempt) == [1, 2], ledger
    first, second = by_attempt[1], by_attempt[2]
    # Really: attempt 1's handler had stopped before attempt 2's started.
    assert (1, "end") in real, real
    assert real[(1, "end")] <= real[(2, "start")], (
        f"attempt 1 ran {real[(1, 'end')] - real[(2, 'start')]:.1f}s into attempt 2")
    # The ledger: attempt 1 ended no earlier than its handler really stopped, before attempt 2 began.
    assert first["finished_at"].timestamp() <= second["started_at"].timestamp()
    assert second["started_at"].timestamp() <= real[(2, "start")]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["drop", "blackhole"])
async def test_http_run_stops_its_job_when_its_database_path_is_cut_before_a_second_daemon_recovers_it(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path, fault: str
) -> None:
    marked_file = tmp_path / "marks.jsonl"
    with TcpProxy() as proxy, _processes(database_url, proxy, marked_file) as http:
        port = await http.http_port()
        job = await _enqueue_after_first_fetch(conn)
        answers: list[httpx.Response | BaseException] = []
        async with anyio.create_task_group() as tg:
            await _start_run(port, tg, answers)
            await _held_by_http(conn, job.id)
            await anyio.sleep(LEASE_S / 2)
            getattr(proxy, fault)()
            recoverer = WorkerProcess(_env(database_url, marked_file), name="recoverer")
            try:
                await _second_attempt_done(conn, job.id, timeout_s=LEASE_S * 6)
            finally:
                recoverer.cleanup()
            proxy.heal()
            with anyio.fail_after(30):  # the HTTP run ends well within its 60 s budget
                while not answers:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        ledger = await conn.fetch("SELECT attempt, outcome, started_at, finished_at FROM job_runs "
                                  "WHERE job_id = $1", job.id)
    real = marks(str(marked_file))
    _assert_no_overlap(marked_file, ledger)
    first = next(r for r in ledger if r["attempt"] == 1)
    assert real[(1, "end")] <= first["finished_at"].timestamp(), "the ledger ends attempt 1 before it stopped"


@pytest.mark.slow
async def test_http_run_stops_its_job_when_it_is_cancelled_and_retried_meanwhile(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    marked_file = tmp_path / "marks.jsonl"
    with TcpProxy() as proxy, _processes(database_url, proxy, marked_file) as http:
        port = await http.http_port()
        job = await _enqueue_after_first_fetch(conn)
        answers: list[httpx.Response | BaseException] = []
        async with anyio.create_task_group() as tg:
            await _start_run(port, tg, answers)
            await _held_by_http(conn, job.id)
            recoverer = WorkerProcess(_env(database_url, marked_file), name="recoverer")
            try:
                await recoverer.wait_event("listener.listening")
                assert await queue.cancel(conn, [job.id], "operator: wrong input") == [job.id]
                assert await queue.retry_now(conn, [job.id]) == [job.id]  # the recoverer claims it at once
                await _second_attempt_done(conn, job.id, timeout_s=LEASE_S * 6)
            finally:
                recoverer.cleanup()
            with anyio.fail_after(30):
                while not answers:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        ledger = await conn.fetch("SELECT attempt, outcome, started_at, finished_at FROM job_runs "
                                  "WHERE job_id = $1", job.id)
    _assert_no_overlap(marked_file, ledger)
