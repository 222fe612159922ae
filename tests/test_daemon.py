"""The daemon against a real PostgreSQL: wake-ups, retries, leases, shutdown."""

import time
from typing import Any

import anyio
import asyncpg
import pytest
from pydantic import BaseModel, ConfigDict
from structlog.testing import capture_logs

from tests.support.daemon import make_settings, running_daemon, wait_for
from tests.support.rows import status_of
from worker import queue
from worker.builtin import default_registry
from worker.queue import NewJob
from worker.runtime.claim_ahead import AHEAD_MAX_JOBS
from worker.runtime.daemon import Daemon
from worker.tasks import Registry, Task, TaskContext


class Empty(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def test_job_succeeds_with_its_result_and_a_ledger_row(database_url: str, conn: asyncpg.Connection) -> None:
    registry = Registry()

    async def handler(_p: Empty, ctx: TaskContext) -> dict[str, Any]:
        return {"hello": "world", "attempt": ctx.job.attempt}

    registry.add(Task("greet", handler, Empty))
    async with running_daemon(make_settings(database_url), registry):
        res = await queue.enqueue(conn, NewJob("greet"))
        await wait_for(lambda: _is(conn, res.id, "succeeded"))
    row = await queue.get_job(conn, res.id)
    assert row["result"] == {"hello": "world", "attempt": 1}
    assert row["finished_at"] is not None and row["locked_by"] is None
    runs = await queue.job_runs(conn, res.id)
    assert [(r["attempt"], r["outcome"], r["worker_id"]) for r in runs] == [(1, "succeeded", "test-worker")]


async def _is(conn: asyncpg.Connection, job_id: object, status: str) -> bool:
    return await status_of(conn, job_id) == status


async def test_failing_job_is_retried_with_backoff_then_failed_with_last_error(
    database_url: str, conn: asyncpg.Connection
) -> None:
    with capture_logs() as logs:
        async with running_daemon(make_settings(database_url), default_registry()):
            res = await queue.enqueue(conn, NewJob("noop", {"fail": "kaboom"}, max_attempts=3))
            await wait_for(lambda: _is(conn, res.id, "failed"))
    row = await queue.get_job(conn, res.id)
    assert row["attempts"] == 3 and row["last_error"] == "RuntimeError: kaboom"
    runs = await queue.job_runs(conn, res.id)
    assert [r["outcome"] for r in runs] == ["retry", "retry", "failed"]
    # the retries waited: each attempt started after the previous one finished plus the backoff
    assert runs[1]["started_at"] > runs[0]["finished_at"]
    events = [e["event"] for e in logs if e.get("job_id") == str(res.id)]
    assert events.count("job.failed") == 2 and events.count("job.failed_permanently") == 1


async def test_invalid_payload_fails_at_once_and_the_daemon_keeps_running(
    database_url: str, conn: asyncpg.Connection
) -> None:
    async with running_daemon(make_settings(database_url), default_registry()) as daemon:
        bad = await queue.enqueue(conn, NewJob("noop", {"sleep_s": "a while"}))
        await wait_for(lambda: _is(conn, bad.id, "failed"))
        good = await queue.enqueue(conn, NewJob("noop"))
        await wait_for(lambda: _is(conn, good.id, "succeeded"))
        assert all(daemon.alive.values())
    row = await queue.get_job(conn, bad.id)
    assert row["attempts"] == 1
    assert row["last_error"].startswith("invalid payload for noop: sleep_s")


async def test_task_types_without_a_handler_stay_pending(database_url: str, conn: asyncpg.Connection) -> None:
    async with running_daemon(make_settings(database_url), default_registry()):
        other = await queue.enqueue(conn, NewJob("not_here"))
        mine = await queue.enqueue(conn, NewJob("noop"))
        await wait_for(lambda: _is(conn, mine.id, "succeeded"))
    assert await status_of(conn, other.id) == "pending"


async def test_job_inserted_by_plain_sql_starts_long_before_the_poll_interval(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, poll_interval_s=60.0)
    async with running_daemon(settings, default_registry()) as daemon:
        await wait_for(lambda: _true(daemon.listener is not None and daemon.listener.state.connected))
        await anyio.sleep(0.2)  # let the first (empty) fetch finish and the daemon go idle
        started = time.monotonic()
        job_id = await conn.fetchval("INSERT INTO job_queue (task_type) VALUES ('noop') RETURNING id")
        await wait_for(lambda: _is(conn, job_id, "succeeded"), timeout_s=5)
        assert time.monotonic() - started < settings.poll_interval_s / 2


async def _true(value: bool) -> bool:
    return value


async def test_listener_comes_back_after_its_backend_is_terminated(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, poll_interval_s=60.0)
    async with running_daemon(settings, default_registry()) as daemon:
        assert daemon.listener is not None
        state = daemon.listener.state
        await wait_for(lambda: _true(state.connected))
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'worker-listener' AND datname = current_database()"
        )
        assert killed == 1
        await wait_for(lambda: _true(state.reconnects >= 1 and state.connected))
        # LISTEN works again: a job inserted now starts well before the 60 s poll
        job_id = await conn.fetchval("INSERT INTO job_queue (task_type) VALUES ('noop') RETURNING id")
        await wait_for(lambda: _is(conn, job_id, "succeeded"), timeout_s=5)


async def test_expired_lease_of_a_dead_worker_is_recovered_and_the_job_rerun(
    database_url: str, conn: asyncpg.Connection
) -> None:
    res = await queue.enqueue(conn, NewJob("noop"))
    await queue.claim(conn, worker_id="crashed-worker", task_types=["noop"], limit=1, lease_s=1)
    async with running_daemon(make_settings(database_url), default_registry()):
        await wait_for(lambda: _is(conn, res.id, "succeeded"), timeout_s=10)
    runs = await queue.job_runs(conn, res.id)
    assert [(r["attempt"], r["outcome"], r["worker_id"]) for r in runs] == [
        (1, "abandoned", "crashed-worker"),
        (2, "succeeded", "test-worker"),
    ]


async def test_a_long_job_keeps_its_lease_by_heartbeat(database_url: str, conn: asyncpg.Connection) -> None:
    settings = make_settings(database_url, lease_s=1.0, recovery_interval_s=0.2)
    async with running_daemon(settings, default_registry()):
        res = await queue.enqueue(conn, NewJob("noop", {"sleep_s": 3.5}))
        await wait_for(lambda: _is(conn, res.id, "succeeded"), timeout_s=10)
    runs = await queue.job_runs(conn, res.id)
    assert [r["outcome"] for r in runs] == ["succeeded"]


async def test_job_over_its_timeout_is_cancelled_and_recorded_as_a_failed_attempt(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, task_timeouts_s={"noop": 0.3})
    async with running_daemon(settings, default_registry()):
        res = await queue.enqueue(conn, NewJob("noop", {"sleep_s": 30}, max_attempts=1))
        await wait_for(lambda: _is(conn, res.id, "failed"), timeout_s=10)
    row = await queue.get_job(conn, res.id)
    assert row["last_error"] == "timed out after 0.3s"


async def test_graceful_stop_lets_short_jobs_finish_and_hands_long_ones_back(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, shutdown_grace_s=1.0)
    short = await queue.enqueue(conn, NewJob("noop", {"sleep_s": 0.3}))
    long = await queue.enqueue(conn, NewJob("noop", {"sleep_s": 60}))
    async with running_daemon(settings, default_registry()) as daemon:
        await wait_for(lambda: _true(len(daemon.running) == 2))
        stop_started = time.monotonic()
        daemon.stop()
    assert time.monotonic() - stop_started < settings.shutdown_grace_s + 5
    assert await status_of(conn, short.id) == "succeeded"
    row = await queue.get_job(conn, long.id)
    assert row["status"] == "pending" and row["attempts"] == 0 and row["locked_by"] is None
    runs = await queue.job_runs(conn, long.id)
    assert [r["outcome"] for r in runs] == ["interrupted"]


async def test_cancelled_running_job_is_stopped_by_its_worker(database_url: str, conn: asyncpg.Connection) -> None:
    settings = make_settings(database_url, lease_s=1.0)
    async with running_daemon(settings, default_registry()) as daemon:
        res = await queue.enqueue(conn, NewJob("noop", {"sleep_s": 60}))
        await wait_for(lambda: _true(res.id in daemon.running))
        await queue.cancel(conn, [res.id], reason="operator said so")
        await wait_for(lambda: _true(res.id not in daemon.running), timeout_s=5)
    row = await queue.get_job(conn, res.id)
    assert row["status"] == "cancelled" and row["last_error"] == "operator said so"


async def test_concurrency_is_bounded(database_url: str, conn: asyncpg.Connection) -> None:
    settings = make_settings(database_url, concurrency=3)
    in_flight, peak = 0, 0
    three = anyio.Event()
    registry = Registry()

    async def handler(_p: Empty, _ctx: TaskContext) -> None:
        # The handlers count themselves (no sampling): each holds its slot until three run at once (or 5 s pass,
        # which fails the peak below), so the bound is both reached and never passed, whatever the machine's pace.
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 3:
            three.set()
        try:
            with anyio.move_on_after(5):
                await three.wait()
            await anyio.sleep(0)
        finally:
            in_flight -= 1

    registry.add(Task("slow", handler, Empty))
    async with running_daemon(settings, registry):
        await queue.enqueue_many(conn, [NewJob("slow") for _ in range(12)])

        async def all_succeeded() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM job_queue WHERE status='succeeded'") == 12)

        await wait_for(all_succeeded, timeout_s=15)
    assert peak == 3
    assert await conn.fetchval("SELECT count(*) FROM job_queue WHERE status='succeeded'") == 12


async def test_a_crashed_loop_stops_the_daemon_with_exit_code_1(database_url: str) -> None:
    from worker import db

    settings = make_settings(database_url)
    pool = await db.create_pool(settings.dsn)
    daemon = Daemon(settings, default_registry(), pool)

    async def broken() -> None:
        raise RuntimeError("loop bug")

    daemon.add_loop("broken", broken)
    try:
        with capture_logs() as logs:
            with anyio.fail_after(10):
                code = await daemon.run()
    finally:
        await pool.close()
    assert code == 1
    assert any(e["event"] == "daemon.loop_crashed" and e["loop"] == "broken" for e in logs)


@pytest.mark.parametrize("missing", ["DATABASE_URL"])
def test_run_with_invalid_settings_exits_2_before_connecting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    from worker.cli.main import main

    monkeypatch.delenv(missing, raising=False)
    monkeypatch.setenv("WORKER_CONCURRENCY", "-4")
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("worker: error: invalid setting") and "\n" not in err


async def test_a_database_refusing_connections_is_waited_out_not_fatal(
    database_url: str, conn: asyncpg.Connection, fresh_db_name: str
) -> None:
    settings = make_settings(database_url, poll_interval_s=0.3, recovery_interval_s=0.3)
    async with running_daemon(settings, default_registry()) as daemon:
        await wait_for(lambda: _true(daemon.listener is not None and daemon.listener.state.connected))
        admin = await asyncpg.connect(database_url.rsplit("/", 1)[0] + "/postgres")
        await admin.execute(f'ALTER DATABASE "{fresh_db_name}" ALLOW_CONNECTIONS false')
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await anyio.sleep(1.5)  # several polls and reconnect attempts, all refused
            assert all(daemon.alive.values()), daemon.alive
            assert not daemon.stop_event.is_set()
            job_id = await conn.fetchval("INSERT INTO job_queue (task_type) VALUES ('noop') RETURNING id")
        finally:
            await admin.execute(f'ALTER DATABASE "{fresh_db_name}" ALLOW_CONNECTIONS true')
            await admin.close()
        await wait_for(lambda: _is(conn, job_id, "succeeded"), timeout_s=15)


async def _running_in_db(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM job_queue WHERE status = 'running'"))


async def test_very_short_jobs_are_claimed_batches_ahead_and_handed_back_unstarted_at_stop(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, concurrency=2, claim_ahead_below_ms=60_000.0, shutdown_grace_s=0.5)
    async with running_daemon(settings, default_registry()) as daemon:
        quick = await queue.enqueue_many(conn, [NewJob("noop") for _ in range(2)])  # durations become known
        await wait_for(lambda: _all(conn, quick, "succeeded"))
        held = 2 * (1 + daemon._ahead_batches())  # the work rule's depth for these durations
        assert 4 <= held <= 2 + AHEAD_MAX_JOBS
        slow = await queue.enqueue_many(conn, [NewJob("noop", {"sleep_s": 30}) for _ in range(held + 4)])
        await wait_for(lambda: _true(len(daemon.running) == 2 and len(daemon.ready) == held - 2))
        assert await _running_in_db(conn) == held  # never more than the slots plus the batches ahead
        await anyio.sleep(settings.heartbeat_interval_s * 2)  # the ones waiting keep their leases
        assert await _running_in_db(conn) == held
    rows = await conn.fetch("SELECT status, attempts FROM job_queue WHERE id = ANY($1)", slow)
    assert sorted((r["status"], r["attempts"]) for r in rows) == [("pending", 0)] * (held + 4)
    outcomes = await conn.fetch("SELECT outcome FROM job_runs WHERE job_id = ANY($1)", slow)
    assert [r["outcome"] for r in outcomes] == ["interrupted"] * held


async def test_no_more_jobs_are_claimed_ahead_once_a_job_runs_longer_than_the_threshold(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, concurrency=2, claim_ahead_below_ms=100.0)
    async with running_daemon(settings, default_registry()) as daemon:
        quick = await queue.enqueue_many(conn, [NewJob("noop") for _ in range(4)])  # the average: ~0 ms
        await wait_for(lambda: _all(conn, quick, "succeeded"))
        await queue.enqueue_many(conn, [NewJob("noop", {"sleep_s": 30}) for _ in range(2)])
        await wait_for(lambda: _true(len(daemon.running) == 2))
        await anyio.sleep(0.3)  # both have now run longer than claim_ahead_below_ms
        await queue.enqueue_many(conn, [NewJob("noop", {"sleep_s": 30}) for _ in range(6)])
        await anyio.sleep(0.5)
        assert await _running_in_db(conn) == 2 and not daemon.ready


async def test_a_job_of_higher_priority_starts_before_the_jobs_held_ahead_not_behind_them(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, concurrency=2, claim_ahead_below_ms=60_000.0, shutdown_grace_s=0.5)
    async with running_daemon(settings, default_registry()) as daemon:
        quick = await queue.enqueue_many(conn, [NewJob("noop") for _ in range(2)])  # the average: ~0 ms
        await wait_for(lambda: _all(conn, quick, "succeeded"))
        await queue.enqueue_many(conn, [NewJob("noop", {"sleep_s": 1.0}) for _ in range(10)])
        await wait_for(lambda: _true(len(daemon.running) == 2 and len(daemon.ready) == 8))
        urgent = await queue.enqueue(conn, NewJob("noop", priority=100))  # claimed by the next claim
        await wait_for(lambda: _is(conn, urgent.id, "succeeded"), timeout_s=5)
        assert len(daemon.ready) >= 6  # it took the first free slot; the held ones still wait


async def test_one_long_job_among_many_slots_does_not_stop_the_others_claiming_ahead(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, concurrency=4, claim_ahead_below_ms=100.0)
    async with running_daemon(settings, default_registry()) as daemon:
        short = await queue.enqueue_many(conn, [NewJob("noop", {"sleep_s": 0.02}) for _ in range(4)])
        await wait_for(lambda: _all(conn, short, "succeeded"))  # the average: ~20 ms, under the threshold
        await queue.enqueue_many(conn, [NewJob("noop", {"sleep_s": 30})])
        await wait_for(lambda: _true(len(daemon.running) == 1))
        await anyio.sleep(0.3)  # it has now run longer than claim_ahead_below_ms, holding one slot of four
        await queue.enqueue_many(conn, [NewJob("noop", {"sleep_s": 0.02}) for _ in range(200)])
        await wait_for(lambda: _true(len(daemon.ready) > 0))  # the three other slots' jobs are claimed ahead


async def test_long_jobs_are_not_claimed_ahead(database_url: str, conn: asyncpg.Connection) -> None:
    settings = make_settings(database_url, concurrency=2, claim_ahead_below_ms=50.0)
    async with running_daemon(settings, default_registry()) as daemon:
        first = await queue.enqueue_many(conn, [NewJob("noop", {"sleep_s": 0.3}) for _ in range(2)])
        await wait_for(lambda: _all(conn, first, "succeeded"))
        await queue.enqueue_many(conn, [NewJob("noop", {"sleep_s": 30}) for _ in range(6)])
        await wait_for(lambda: _true(len(daemon.running) == 2))
        await anyio.sleep(0.3)
        assert await _running_in_db(conn) == 2 and not daemon.ready


async def _all(conn: asyncpg.Connection, ids: list[Any], status: str) -> bool:
    n = await conn.fetchval("SELECT count(*) FROM job_queue WHERE id = ANY($1) AND status = $2", ids, status)
    return bool(n == len(ids))
