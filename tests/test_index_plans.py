"""What migration 014's indexes serve, under stale statistics as in tests/test_claim_plan.py: lease recovery reads
the expired leases through job_queue_running_idx (running jobs only); the due pending count and the oldest due
pending job (stats.sql oldest_due_pending, which queue.queue_depth reads too) skip-scan job_queue_claim_idx per
priority and read the due entries only, never the jobs scheduled for later nor the finished ones. Plans from
EXPLAIN (ANALYZE, FORMAT JSON) of the named queries as the daemon and the readers send them."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from tests.support.claim_plans import nodes
from worker import operations, queue
from worker.sql import queries

_FINISHED = """
INSERT INTO job_queue (task_type, status, attempts, finished_at)
SELECT 'noop', 'succeeded', 1, now() FROM generate_series(1, $1) AS g"""
_DUE = """
INSERT INTO job_queue (task_type, priority, run_at)
SELECT 'noop', (g % 3) * 10, now() - interval '1 hour' + g * interval '1 ms' FROM generate_series(1, $1) AS g"""
_LATER = """
INSERT INTO job_queue (task_type, priority, run_at)
SELECT 'noop', (g % 3) * 10, now() + interval '1 day' FROM generate_series(1, $1) AS g"""
_RUNNING = """
INSERT INTO job_queue (task_type, status, attempts, locked_by, locked_until, started_at)
SELECT 'noop', 'running', 1, 'w', now() + CASE WHEN g <= $2 THEN interval '-1 minute' ELSE interval '1 minute' END,
       now() FROM generate_series(1, $1) AS g"""

STATISTICS = ["analyzed-empty", "analyzed-finished-only", "analyzed-loaded"]


async def _load(conn: asyncpg.Connection, statistics: str) -> None:
    """20,000 finished, 3,000 due pending (3 priorities), 20,000 pending for tomorrow, 300 running of which 20
    have expired leases; ANALYZE before, during or after."""
    if statistics == "analyzed-empty":
        await conn.execute("ANALYZE job_queue")
    await conn.execute(_FINISHED, 20_000)
    if statistics == "analyzed-finished-only":
        await conn.execute("ANALYZE job_queue")
    await conn.execute(_DUE, 3_000)
    await conn.execute(_LATER, 20_000)
    await conn.execute(_RUNNING, 300, 20)
    if statistics == "analyzed-loaded":
        await conn.execute("ANALYZE job_queue")


async def _plan(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    tr = conn.transaction()
    await tr.start()
    try:
        answer = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    finally:
        await tr.rollback()
    plan: dict[str, Any] = (json.loads(answer) if isinstance(answer, str) else answer)[0]["Plan"]
    return plan


def _job_queue_scans(plan: dict[str, Any]) -> list[tuple[str, str | None, int]]:
    """(node type, index, rows read: returned plus filtered out, over all loops) of each scan of job_queue; a
    bitmap scan is named by its index."""
    return [
        (n["Node Type"], n.get("Index Name") or _bitmap_index(n),
         (int(n["Actual Rows"]) + int(n.get("Rows Removed by Filter", 0))
          + int(n.get("Rows Removed by Index Recheck", 0))) * int(n["Actual Loops"]))
        for n in nodes(plan) if n.get("Relation Name") == "job_queue"
    ]


def _bitmap_index(node: dict[str, Any]) -> str | None:
    names = {n["Index Name"] for n in nodes(node)[1:] if n["Node Type"] == "Bitmap Index Scan"}
    return names.pop() if len(names) == 1 else None


@pytest.mark.parametrize("statistics", STATISTICS)
async def test_the_due_pending_count_reads_the_due_entries_of_the_claim_index_only(
    conn: asyncpg.Connection, statistics: str
) -> None:
    await _load(conn, statistics)
    scans = _job_queue_scans(await _plan(conn, queries("stats")["oldest_due_pending"]))
    assert {index for _, index, _ in scans} == {"job_queue_claim_idx"}, scans
    # the due entries, plus one probe per priority (3) and one past the last, never tomorrow's or finished rows
    assert sum(read for _, _, read in scans) <= 3_000 + 10, scans


@pytest.mark.parametrize("statistics", STATISTICS)
async def test_the_due_pending_count_and_oldest_age_are_right_over_priorities_and_schedules(
    conn: asyncpg.Connection, statistics: str
) -> None:
    await _load(conn, statistics)
    row = await conn.fetchrow(queries("stats")["oldest_due_pending"])
    assert row["n"] == 3_000 == await queue.queue_depth(conn)
    assert 3_590 <= row["age_s"] < 3_700  # the oldest due job: an hour old, at the middle priority
    await conn.execute("DELETE FROM job_queue WHERE status = 'pending' AND run_at <= now()")
    row = await conn.fetchrow(queries("stats")["oldest_due_pending"])
    assert (row["age_s"], row["n"]) == (None, 0)
    assert await queue.queue_depth(conn) == 0


@pytest.mark.parametrize("statistics", STATISTICS)
async def test_cleanups_probe_of_the_oldest_due_wait_reads_one_due_entry_per_priority(
    conn: asyncpg.Connection, statistics: str
) -> None:
    await _load(conn, statistics)
    scans = _job_queue_scans(await _plan(conn, queries("stats")["oldest_due_wait"]))
    assert {index for _, index, _ in scans} == {"job_queue_claim_idx"}, scans
    assert sum(read for _, _, read in scans) <= 10, scans  # a probe per priority, one past the last, one entry each
    wait = await operations.oldest_due_wait_s(conn)
    assert wait is not None and 3_590 <= wait < 3_700  # as oldest_due_pending's age
    await conn.execute("DELETE FROM job_queue WHERE status = 'pending' AND run_at <= now()")
    assert await operations.oldest_due_wait_s(conn) is None


@pytest.mark.parametrize("statistics", STATISTICS)
async def test_lease_recovery_reads_the_expired_leases_only_through_the_running_index(
    conn: asyncpg.Connection, statistics: str
) -> None:
    await _load(conn, statistics)
    plan = await _plan(conn, queries("queue")["recover_and_claim"], ["noop"], 0, "w2", 30.0, None, 100)
    expired = [n for n in nodes(plan) if n.get("Subplan Name") == "CTE expired"]
    assert expired, plan
    scans = _job_queue_scans(expired[0])
    assert [index for _, index, _ in scans] == ["job_queue_running_idx"], scans
    assert sum(read for _, _, read in scans) == 20, scans  # the expired leases: none of the 280 live ones


async def test_an_enqueued_job_is_in_no_index_of_running_jobs_until_claimed(conn: asyncpg.Connection) -> None:
    await queue.enqueue_many(conn, [queue.NewJob("noop", {}) for _ in range(100)])
    indexes = {r["indexrelid"]: r["name"] for r in await conn.fetch(
        "SELECT indexrelid, indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = 'job_queue'::regclass")}
    assert "job_queue_running_idx" in indexes.values()
    assert "job_queue_status_run_at_idx" not in indexes.values()

    # an empty B-tree is its metapage alone; then one leaf page holds the claimed jobs' entries
    assert await conn.fetchval("SELECT pg_relation_size('job_queue_running_idx')") == 8192
    await queue.claim(conn, worker_id="w", task_types=["noop"], limit=10, lease_s=30)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
    assert await conn.fetchval("SELECT count(*) FROM bt_page_items('job_queue_running_idx', 1)") == 10
