"""The claim's plan under stale statistics: it walks job_queue_claim_idx in order and stops at its LIMIT, never
reading and sorting every due pending job, whatever ANALYZE saw (before a burst, on an empty queue, on a backlog).

The plans are the ones the claim really ran, nested statements included (auto_explain, EXPLAIN ANALYZE
BUFFERS in JSON, sent to this session as notices)."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest

from tests.support.claim_plans import claim_plans, nodes, sorts_over_job_queue
from worker import queue
from worker.sql import queries

CLAIM = 110  # the daemon's largest claim at its default concurrency (10 slots and 10 batches ahead)

_FINISHED = """
INSERT INTO job_queue (task_type, status, run_at, attempts, created_at, started_at, finished_at)
SELECT 'noop', 'succeeded', now() - interval '1 hour' + g * interval '1 ms', 1, now() - interval '1 hour',
       now() - interval '1 hour', now() - interval '30 minutes'
FROM generate_series(1, $1) AS g"""
_PENDING = """
INSERT INTO job_queue (task_type, run_at)
SELECT 'noop', now() - interval '1 second' FROM generate_series(1, $1) AS g"""


def _claim_index_reads(plans: list[dict[str, Any]]) -> list[int]:
    """Per scan of job_queue_claim_idx: the entries it returned or filtered out (live rows it read)."""
    return [
        int(n["Actual Rows"]) + int(n.get("Rows Removed by Filter", 0))
        for p in plans for n in nodes(p) if n.get("Index Name") == "job_queue_claim_idx"
    ]


async def _assert_claim_walks_the_index(conn: asyncpg.Connection, expect: int) -> None:
    plans, claimed = await claim_plans(conn, limit=CLAIM)
    assert claimed == expect
    assert [s for p in plans for s in sorts_over_job_queue(p)] == []
    assert not any(n.get("Temp Written Blocks") for p in plans for n in nodes(p))
    reads = _claim_index_reads(plans)
    assert reads and sum(reads) <= claimed + 5, reads


async def test_a_burst_after_statistics_of_finished_jobs_is_claimed_through_the_index_without_a_sort(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute(_FINISHED, 100_000)
    await conn.execute("ANALYZE job_queue")  # statistics of a mature table: no pending job at all
    await conn.execute(_PENDING, 30_000)  # then the burst
    await _assert_claim_walks_the_index(conn, CLAIM)


async def test_a_backlog_after_statistics_of_an_empty_queue_is_claimed_through_the_index_without_a_sort(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("ANALYZE job_queue")
    await conn.execute(_PENDING, 10_000)
    await _assert_claim_walks_the_index(conn, CLAIM)


async def test_a_few_jobs_after_statistics_of_a_big_backlog_are_claimed_through_the_index_without_a_sort(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute(_PENDING, 20_000)
    await conn.execute("ANALYZE job_queue")
    await conn.execute(
        "DELETE FROM job_queue WHERE id IN (SELECT id FROM job_queue ORDER BY run_at OFFSET 50)"
    )
    await _assert_claim_walks_the_index(conn, 50)


def test_claim_and_recover_and_claim_pick_jobs_with_the_same_cte() -> None:
    q = queries("queue")

    def picked(sql: str) -> str:
        match = re.search(r"(?:\n|WITH )picked AS \(\n.*?\n\),\n", sql, re.S)
        assert match is not None
        return match.group(0).removeprefix("\n").removeprefix("WITH ")

    assert picked(q["claim"]) == picked(q["recover_and_claim"])
    assert "job_queue_pick(" in picked(q["claim"])


@pytest.mark.parametrize("analyze_first", [True, False])
async def test_a_claim_takes_jobs_by_priority_then_run_at(conn: asyncpg.Connection, analyze_first: bool) -> None:
    if analyze_first:
        await conn.execute("ANALYZE job_queue")
    await conn.execute(
        "INSERT INTO job_queue (task_type, priority, run_at) VALUES"
        " ('noop', 0, now() - interval '3 s'), ('noop', 5, now() - interval '1 s'),"
        " ('noop', 5, now() - interval '2 s'), ('other', 9, now() - interval '9 s'),"
        " ('noop', 9, now() + interval '1 hour')"
    )
    jobs = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=10, lease_s=30)
    runs = await conn.fetch("SELECT run_at FROM job_queue WHERE id = ANY ($1::uuid[]) ORDER BY run_at",
                            [j.id for j in jobs])
    assert [j.priority for j in jobs] == [5, 5, 0]
    assert [j.id for j in jobs][:2] == [
        r["id"] for r in await conn.fetch(
            "SELECT id FROM job_queue WHERE priority = 5 ORDER BY run_at")]
    assert len(runs) == 3
