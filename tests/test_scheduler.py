"""Recurring schedules: one job per slot across racing replicas, only the latest missed slot after downtime,
disabled schedules, and the scheduler loop inside a running daemon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import asyncpg
import pytest

from tests.support.daemon import make_settings, running_daemon, wait_for
from worker import db
from worker.builtin import default_registry
from worker.errors import ConfigError
from worker.runtime.scheduler import Scheduler
from worker.schedules import Schedule, schedules_of
from worker.service import build_daemon
from worker.settings import load_settings
from worker.task_policy import apply_overrides

HOURLY = Schedule("cleanup", "0 * * * *", "cleanup")


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def scheduled_jobs(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch("SELECT task_type, dedupe_key FROM job_queue ORDER BY created_at, dedupe_key")
    return [(r["task_type"], r["dedupe_key"]) for r in rows]


def scheduler(database_url: str, pool: asyncpg.Pool, clock: Clock, *schedules: Schedule) -> Scheduler:
    settings = make_settings(database_url)
    return Scheduler(settings, default_registry(settings), pool, schedules=list(schedules) or [HOURLY], now=clock)


async def test_a_new_schedule_starts_at_its_next_slot(database_url: str, pool: asyncpg.Pool,
                                                      conn: asyncpg.Connection) -> None:
    clock = Clock(datetime(2030, 1, 1, 10, 30, tzinfo=UTC))
    s = scheduler(database_url, pool, clock)
    assert await s.tick() == []
    assert await scheduled_jobs(conn) == []
    clock.now = datetime(2030, 1, 1, 11, 0, 5, tzinfo=UTC)
    fired = await s.tick()
    assert [(f.schedule, f.slot) for f in fired] == [("cleanup", datetime(2030, 1, 1, 11, tzinfo=UTC))]
    assert await scheduled_jobs(conn) == [("cleanup", "schedule:cleanup:2030-01-01T11:00:00+00:00")]


async def test_two_racing_schedulers_enqueue_exactly_one_job_per_slot(
    database_url: str, pool: asyncpg.Pool, conn: asyncpg.Connection
) -> None:
    clock = Clock(datetime(2030, 1, 1, 9, 30, tzinfo=UTC))
    other_pool = await db.create_pool(database_url, max_size=4)
    try:
        a = scheduler(database_url, pool, clock)
        b = scheduler(database_url, other_pool, clock)
        await a.tick()
        for hour in range(10, 16):
            clock.now = datetime(2030, 1, 1, hour, 0, tzinfo=UTC)
            results: list[int] = []

            async def tick(s: Scheduler, out: list[int] = results) -> None:
                out.append(len(await s.tick()))

            async with anyio.create_task_group() as tg:
                for s in (a, b, a, b):
                    tg.start_soon(tick, s)
            assert sorted(results) == [0, 0, 0, 1]
    finally:
        await other_pool.close()
    keys = [k for _, k in await scheduled_jobs(conn)]
    assert keys == [f"schedule:cleanup:2030-01-01T{h}:00:00+00:00" for h in range(10, 16)]


async def test_a_finished_slot_is_not_enqueued_again(database_url: str, pool: asyncpg.Pool,
                                                      conn: asyncpg.Connection) -> None:
    clock = Clock(datetime(2030, 1, 1, 9, 30, tzinfo=UTC))
    s = scheduler(database_url, pool, clock)
    await s.tick()
    clock.now = datetime(2030, 1, 1, 10, 0, 1, tzinfo=UTC)
    assert len(await s.tick()) == 1
    await conn.execute("UPDATE job_queue SET status = 'succeeded', finished_at = now()")
    # the dedupe key no longer guards a finished job: the schedule's slot record does
    clock.now = datetime(2030, 1, 1, 10, 0, 30, tzinfo=UTC)
    assert await s.tick() == []
    assert len(await scheduled_jobs(conn)) == 1


async def test_after_downtime_only_the_latest_missed_slot_is_enqueued(
    database_url: str, pool: asyncpg.Pool, conn: asyncpg.Connection
) -> None:
    clock = Clock(datetime(2030, 1, 1, 10, 5, tzinfo=UTC))
    s = scheduler(database_url, pool, clock)
    await s.tick()
    clock.now = datetime(2030, 1, 1, 15, 20, tzinfo=UTC)  # down from 10:05 to 15:20: five slots missed
    fired = await s.tick()
    assert [f.slot for f in fired] == [datetime(2030, 1, 1, 15, tzinfo=UTC)]
    assert await scheduled_jobs(conn) == [("cleanup", "schedule:cleanup:2030-01-01T15:00:00+00:00")]
    row = await conn.fetchrow("SELECT last_slot, last_job_id FROM job_queue_schedule WHERE name = 'cleanup'")
    assert row["last_slot"] == datetime(2030, 1, 1, 15, tzinfo=UTC) and row["last_job_id"] is not None


async def test_a_disabled_schedule_enqueues_nothing(database_url: str, pool: asyncpg.Pool,
                                                     conn: asyncpg.Connection) -> None:
    clock = Clock(datetime(2030, 1, 1, 9, 30, tzinfo=UTC))
    s = scheduler(database_url, pool, clock, Schedule("cleanup", "", "cleanup"))
    for hour in (9, 10, 11):
        clock.now = datetime(2030, 1, 1, hour, 0, tzinfo=UTC)
        assert await s.tick() == []
    assert await scheduled_jobs(conn) == []
    assert await conn.fetchval("SELECT count(*) FROM job_queue_schedule") == 0


async def test_tasks_declare_the_seed_schedules_and_the_older_settings_still_override_them(database_url: str) -> None:
    # The schedules moved from the settings into the tasks (issue 18); WORKER_SCHEDULE_<NAME> still applies.
    def schedules(settings_: Any) -> dict[str, str]:
        return {s.name: s.cron for s in schedules_of(apply_overrides(default_registry(), settings_))}

    assert schedules(make_settings(database_url)) == {"game_platform_sync": "0 * * * *", "cleanup": "15 3 * * *"}
    with pytest.raises(ConfigError, match="WORKER_TASK_CLEANUP__SCHEDULES: schedules: not a cron expression"):
        schedules(load_settings(database_url=database_url, schedule_cleanup="every day"))
    assert schedules(make_settings(database_url, schedule_game_platform_sync="")) == {"cleanup": "15 3 * * *"}


async def test_daemon_runs_the_scheduler_only_when_schedules_are_enabled(database_url: str, pool: asyncpg.Pool) -> None:
    registry = default_registry()
    on = build_daemon(make_settings(database_url, schedules_enabled=True), registry, pool)
    off = build_daemon(make_settings(database_url, schedules_enabled=False), registry, pool)
    assert "scheduler" in on.extra_loops and "scheduler" not in off.extra_loops


async def test_a_running_daemon_enqueues_and_runs_the_scheduled_cleanup(
    database_url: str, conn: asyncpg.Connection
) -> None:
    old = await conn.fetchval(
        "INSERT INTO job_queue (task_type, status, attempts, finished_at) "
        "VALUES ('noop', 'succeeded', 1, now() - interval '30 days') RETURNING id"
    )
    settings = make_settings(database_url, schedules_enabled=True, schedule_cleanup="* * * * * *",
                             schedule_game_platform_sync="")
    async with running_daemon(settings, default_registry(settings)):

        async def cleaned() -> bool:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM job_queue WHERE task_type = 'cleanup' AND status = 'succeeded'"))

        await wait_for(cleaned, timeout_s=15)
    assert await conn.fetchval("SELECT count(*) FROM job_queue WHERE id = $1", old) == 0
    result = await conn.fetchval("SELECT result FROM job_queue WHERE task_type = 'cleanup' AND status = 'succeeded'"
                                 " ORDER BY finished_at LIMIT 1")
    assert result["jobs"] >= 1
    key = await conn.fetchval("SELECT dedupe_key FROM job_queue WHERE task_type = 'cleanup' LIMIT 1")
    assert key.startswith("schedule:cleanup:")
    last_slot = await conn.fetchval("SELECT last_slot FROM job_queue_schedule WHERE name = 'cleanup'")
    assert timedelta(0) <= datetime.now(UTC) - last_slot < timedelta(minutes=1)
