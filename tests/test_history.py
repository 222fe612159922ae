"""History at a glance: the charts count each finished attempt once whether it is read from the ledger or from
the per-minute rollup, the queue samples feed the depth chart, and each schedule's track record names failed,
missed and skipped slots (with metrics an alert rule can use)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.support.admin import BEARER, admin_daemon
from tests.support.daemon import make_settings
from worker import history, nodes
from worker.builtin import default_registry
from worker.metrics import Metrics
from worker.schedules import Schedule
from worker.sql import queries
from worker.task_policy import apply_overrides

_H = queries("history")


async def _job(conn: asyncpg.Connection, task_type: str, status: str = "succeeded", *, dedupe: str | None = None,
               started: datetime | None = None, finished: datetime | None = None, error: str | None = None) -> Any:
    running = status == "running"
    return await conn.fetchval(
        "INSERT INTO job_queue (task_type, status, dedupe_key, started_at, finished_at, last_error, attempts,"
        " locked_by, locked_until) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8) RETURNING id",
        task_type, status, dedupe, started, finished, error,
        "w" if running else None, datetime.now(UTC) + timedelta(minutes=5) if running else None,
    )


async def _run(conn: asyncpg.Connection, job_id: Any, outcome: str, minutes_ago: float) -> None:
    await conn.execute(
        "INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, duration_ms)"
        " VALUES ($1, 1, 'w', now() - make_interval(secs => $2), now() - make_interval(secs => $2), $3, 5)",
        job_id, minutes_ago * 60, outcome,
    )


def _totals(c: dict[str, Any]) -> tuple[int, int, int]:
    return sum(c["succeeded"]), sum(c["retried"]), sum(c["failed"])


async def test_charts_count_each_attempt_once_before_and_after_the_ledger_rollup(conn: asyncpg.Connection) -> None:
    a = await _job(conn, "noop")
    b = await _job(conn, "cleanup", "failed")
    for minutes in (30, 20, 2):
        await _run(conn, a, "succeeded", minutes)
    await _run(conn, b, "retry", 25)
    await _run(conn, b, "abandoned", 24)
    await _run(conn, b, "failed", 1)
    await _run(conn, b, "interrupted", 1)
    await _run(conn, a, "succeeded", 60 * 30)  # a day and more ago: in the week only
    now = await conn.fetchval("SELECT now()")
    before = await history.charts(conn, now, "hour")
    assert _totals(before) == (3, 2, 1)
    assert len(before["buckets"]) == 60 and before["bucket_s"] == 60
    row = await conn.fetchrow(_H["rollup"], 300.0)
    assert row["got"] and row["minutes"] >= 5
    for window, expected in (("hour", (3, 2, 1)), ("day", (3, 2, 1)), ("week", (4, 2, 1))):
        assert _totals(await history.charts(conn, now, window)) == expected, window
    assert _totals(await history.charts(conn, now, "hour", "cleanup")) == (0, 2, 1)
    assert _totals(await history.charts(conn, now, "hour", "noop")) == (3, 0, 0)
    await conn.fetchrow(_H["rollup"], 300.0)  # idempotent: a second run counts nothing twice
    assert _totals(await history.charts(conn, now, "hour")) == (3, 2, 1)


async def test_the_depth_chart_shows_this_minutes_due_jobs_once_whatever_the_number_of_samplers(
    conn: asyncpg.Connection
) -> None:
    for _ in range(3):
        await conn.execute("INSERT INTO job_queue (task_type, run_at) VALUES ('noop', now() - interval '90 s')")
    await conn.execute(_H["sample_queue"])
    await conn.execute("INSERT INTO job_queue (task_type) VALUES ('noop')")
    await conn.execute(_H["sample_queue"])  # same minute: written once
    now = await conn.fetchval("SELECT now()")
    c = await history.charts(conn, now, "hour")
    assert [v for v in c["due_pending"] if v is not None] == [3]
    assert next(v for v in c["oldest_due_age_s"] if v is not None) >= 90
    assert [v for v in (await history.charts(conn, now, "hour", "cleanup"))["due_pending"] if v is not None] == [0]


async def test_a_schedules_track_record_shows_failed_missed_and_skipped_slots_and_counts_them(
    database_url: str, conn: asyncpg.Connection
) -> None:
    s = Schedule("game_platform_sync", "0 * * * *", "game_platform_sync")
    now = await conn.fetchval("SELECT now()")
    slots = [s.latest_slot(now) - timedelta(hours=h) for h in range(5, -1, -1)]  # six slots, oldest first
    await conn.execute(
        "INSERT INTO job_queue_schedule (name, cron, task_type, last_slot) VALUES ($1, $2, $3, $4)",
        s.name, s.cron, s.task_type, slots[-1],
    )
    hour = timedelta(hours=1)
    await _job(conn, s.task_type, dedupe=s.dedupe_key(slots[0]), started=slots[0],
               finished=slots[0] + timedelta(seconds=40))
    # slots[1] ran past slots[2]: slots[2] has no job and counts as skipped, not missed.
    await _job(conn, s.task_type, dedupe=s.dedupe_key(slots[1]), started=slots[1], finished=slots[1] + hour * 1.5)
    # slots[3]: no job at all: missed.
    await _job(conn, s.task_type, "failed", dedupe=s.dedupe_key(slots[4]), started=slots[4],
               finished=slots[4] + timedelta(seconds=3), error="upstream 503")
    settings = make_settings(database_url, schedules_enabled=True, schedule_cleanup="")
    # Read 5 minutes after the latest slot, not after now: near the end of an hour now + 5 min is the next slot.
    registry = apply_overrides(default_registry(), settings)
    (track,) = await history.track_records(
        conn, settings, slots[-1] + timedelta(minutes=5), registry=registry, slots=6
    )
    states = [x["state"] for x in track["slots"]]
    assert states[:5] == ["succeeded", "succeeded", "skipped", "missed", "failed"]
    assert states[5] in ("missed", "due")  # the current slot: no job (depends on the minute the test runs in)
    assert track["slots"][0]["duration_s"] == 40.0
    assert track["slots"][4]["error"] == "upstream 503"
    assert track["unhealthy"] and track["last_state"] in ("failed", "missed")
    assert track["consecutive_failures"] >= 2
    assert track["last_success_at"] == slots[1] + hour * 1.5
    metrics = Metrics(settings=settings, registry=registry)
    assert await metrics.refresh(conn)
    text = metrics.render().decode()
    assert 'worker_schedule_unhealthy{schedule="game_platform_sync"} 1.0' in text
    assert "worker_schedules_unhealthy 1.0" in text
    found = re.search(r'worker_schedule_last_success_timestamp_seconds\{schedule="game_platform_sync"\} (\S+)', text)
    assert found and float(found.group(1)) == (slots[1] + hour * 1.5).timestamp()


async def test_the_history_and_schedules_api_refuse_bad_input_and_answer_with_series(database_url: str) -> None:
    async with admin_daemon(database_url) as (_, client):
        for query in ("window=month", "window=hour&colour=red", "task_type=Not%20A%20Type"):
            r = await client.get(f"/admin/api/history?{query}", headers=BEARER)
            assert r.status_code in (400, 422), (query, r.text)
            assert "error" in r.json()
        r = await client.get("/admin/api/history?window=day&task_type=noop", headers=BEARER)
        assert r.status_code == 200
        body = r.json()
        assert body["window"] == "day" and len(body["buckets"]) == 96 and len(body["succeeded"]) == 96
        r = await client.get("/admin/api/schedules", headers=BEARER)
        assert r.status_code == 200 and isinstance(r.json()["schedules"], list)
        assert (await client.get("/admin/api/workers?x=1", headers=BEARER)).status_code in (400, 422)
    assert nodes.GONE_LEASES == 3.0
