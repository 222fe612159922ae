"""Maintenance under load: the scheduled cleanup is claimed ahead of any backlog, and `worker doctor` warns when
autovacuum cannot keep the queue's tables' dead rows bounded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg

from tests.support.daemon import make_settings
from worker import db, queue
from worker.builtin import default_registry
from worker.cli.doctor import Check, run_checks
from worker.cli.pgcluster import throwaway_cluster
from worker.migrate import migrate
from worker.queue import NewJob
from worker.runtime.scheduler import Scheduler
from worker.schedules import schedules_of
from worker.task_policy import apply_overrides


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def test_the_scheduled_cleanup_is_claimed_ahead_of_a_backlog(
    database_url: str, pool: asyncpg.Pool, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, schedules_enabled=True, schedule_cleanup="0 * * * *",
                             schedule_game_platform_sync="")
    registry = default_registry(settings)
    clock = Clock(datetime(2030, 1, 1, 10, 30, tzinfo=UTC))
    schedules = schedules_of(apply_overrides(default_registry(), settings))  # cleanup declares priority 1000
    s = Scheduler(settings, registry, pool, schedules=schedules, now=clock)
    await s.tick()  # registers the schedule
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(300)])  # a backlog, due before the slot
    clock.now = datetime(2030, 1, 1, 11, 0, 5, tzinfo=UTC)
    [fired] = await s.tick()
    jobs = await queue.claim(conn, worker_id="w", task_types=registry.names(), limit=1, lease_s=30)
    assert [(j.id, j.task_type) for j in jobs] == [(fired.job_id, "cleanup")]


async def _doctor(database_url: str) -> Check:
    settings = make_settings(database_url)
    got = {c.name: c for c in await run_checks(settings, default_registry(settings))}
    return got["autovacuum"]


async def test_doctor_warns_on_this_server_exactly_when_its_autovacuum_is_off(
    database_url: str, conn: asyncpg.Connection
) -> None:
    server_on = await conn.fetchval("SELECT current_setting('autovacuum')::boolean")
    check = await _doctor(database_url)
    assert check.status == ("pass" if server_on else "warn")
    if not server_on:  # the shared test server runs with autovacuum = off
        assert check.figure.startswith("off on the server") and "docs/maintenance.md" in check.detail


def _on_stock_cluster(fn: Any) -> None:
    """Run fn(url) against a migrated database of a throwaway cluster with stock settings (autovacuum on)."""
    with throwaway_cluster() as cluster:

        async def main() -> None:
            admin = await asyncpg.connect(cluster.url())
            try:
                await admin.execute("CREATE DATABASE worker")
            finally:
                await admin.close()
            conn = await db.connect(cluster.url("worker"))
            try:
                await migrate(conn)
                await fn(cluster.url("worker"), conn)
            finally:
                await conn.close()

        anyio.run(main)


def test_doctor_passes_with_autovacuum_on_and_warns_when_a_queue_table_or_the_server_turns_it_off() -> None:
    seen: list[tuple[str, str]] = []

    async def check(url: str, conn: asyncpg.Connection) -> None:
        c = await _doctor(url)
        seen.append((c.status, c.figure.split(";")[0]))
        await conn.execute("ALTER TABLE job_runs SET (autovacuum_enabled = false)")
        c = await _doctor(url)
        seen.append((c.status, c.figure.split(";")[0]))
        await conn.execute("ALTER TABLE job_runs RESET (autovacuum_enabled)")
        await conn.execute("ALTER SYSTEM SET autovacuum = off")
        await conn.execute("SELECT pg_reload_conf()")
        await anyio.sleep(0.5)
        c = await _doctor(url)
        seen.append((c.status, c.figure.split(";")[0]))

    _on_stock_cluster(check)
    assert seen == [("pass", "on"), ("warn", "off for job_runs"), ("warn", "off on the server")]
