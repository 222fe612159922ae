"""A claim that walks the claim index from a key (migration 016, worker/runtime/walk.py): it does not step over
the entries that earlier claims left in the index's head, and it still takes jobs in claim order: the
priorities above the key's whole, its own from the key, those below whole. Jobs that appear before the key
since are left to the daemon's full walk."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from worker import queue
from worker.jobs import Job
from worker.queue import NewJob


async def _claim(conn: asyncpg.Connection, limit: int, walk_from: uuid.UUID | None = None,
                 task_types: list[str] | None = None) -> list[Job]:
    return await queue.claim(conn, worker_id="w", task_types=task_types or ["noop"], limit=limit, lease_s=30,
                             walk_from=walk_from)


async def _claim_index_blocks(conn: asyncpg.Connection, limit: int, walk_from: uuid.UUID | None) -> int:
    """The claim index's blocks one claim reads (the table's are not counted)."""
    read = "SELECT pg_stat_get_xact_blocks_fetched('job_queue_claim_idx'::regclass)"
    async with conn.transaction():
        before = await conn.fetchval(read)
        assert len(await _claim(conn, limit, walk_from)) == limit
        return int(await conn.fetchval(read)) - int(before)


async def test_a_claim_from_the_last_claims_key_does_not_step_over_the_entries_claimed_before_it(
    conn: asyncpg.Connection,
) -> None:
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(30_000)])
    assert len(await _claim(conn, 20_000)) == 20_000  # their entries stay in the index until a vacuum
    last = await _claim(conn, 100)
    from_head = await _claim_index_blocks(conn, 100, None)
    from_key = await _claim_index_blocks(conn, 100, last[0].id)
    assert from_head >= 100, from_head  # 20,000 dead entries: over a hundred leaf pages
    assert from_key <= 20, from_key  # the descents, then the last two claims' 200 entries and the 100 claimed


@pytest.mark.parametrize("limited", [False, True], ids=["unlimited", "a limited type among them"])
async def test_a_claim_from_a_key_takes_higher_priorities_first_and_lower_ones_after_the_keys(
    conn: asyncpg.Connection, limited: bool
) -> None:
    types = ["noop", "capped"]
    if limited:  # the claim goes through job_queue_pick_limited
        await conn.execute("INSERT INTO job_queue_limits (task_type, max_running) VALUES ('capped', 1)")
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(10)])
    first = await _claim(conn, 5, task_types=types)
    await queue.enqueue_many(conn, [NewJob("noop", priority=5), NewJob("noop", priority=-3),
                                    NewJob("capped", priority=-3), NewJob("capped", priority=-3)])
    jobs = await _claim(conn, 20, walk_from=first[0].id, task_types=types)
    got = [(j.task_type, j.priority) for j in jobs]
    assert got[:6] == [("noop", 5)] + [("noop", 0)] * 5
    assert sorted(got[6:]) == [("capped", -3)] * (1 if limited else 2) + [("noop", -3)]  # one run_at: id order
    assert not await conn.fetchval("SELECT count(*) FROM job_queue WHERE status = 'pending' AND task_type = 'noop'")


async def test_a_job_due_before_the_key_since_is_left_to_the_full_walk(conn: asyncpg.Connection) -> None:
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(4)])
    first = await _claim(conn, 2)
    late = await queue.enqueue(conn, NewJob("noop", run_at=first[0].started_at.replace(year=2000)))
    taken = await _claim(conn, 10, walk_from=first[0].id)
    assert late.id not in {j.id for j in taken} and len(taken) == 2
    assert [j.id for j in await _claim(conn, 10)] == [late.id]


async def test_a_key_that_is_pending_again_or_unknown_walks_the_whole_index(conn: asyncpg.Connection) -> None:
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(3)])
    first = await _claim(conn, 1)
    released = await queue.release(conn, "w", [(first[0].id, first[0].attempt, first[0].started_at)])
    assert released == {first[0].id}
    early = await queue.enqueue(conn, NewJob("noop", run_at=first[0].started_at.replace(year=2000)))
    jobs = await _claim(conn, 1, walk_from=first[0].id)  # handed back: pending, maybe with another run_at
    assert [j.id for j in jobs] == [early.id]
    again = await queue.enqueue(conn, NewJob("noop", run_at=first[0].started_at.replace(year=2001)))
    assert [j.id for j in await _claim(conn, 1, walk_from=uuid.uuid4())] == [again.id]
