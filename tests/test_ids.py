"""Job ids ordered by time (migration 015): version-7 UUIDs whose first 48 bits are the inserting transaction's
start in Unix milliseconds, random below that; ids stored before the migration stay as they were. A batch
enqueue's ids rise in the batch's order (migration 020)."""

import asyncio
import uuid

import asyncpg
import pytest

from worker import db, queue
from worker.builtin.cleanup import key_ms
from worker.migrate import migrate
from worker.queue import NewJob
from worker.sql import migration_files


def _millis(job_id: uuid.UUID) -> int:
    return job_id.int >> 80


async def test_every_way_of_enqueuing_gives_a_version_7_id_carrying_the_jobs_created_at_in_milliseconds(
    conn: asyncpg.Connection,
) -> None:
    one = await queue.enqueue(conn, NewJob("noop"))
    many = await queue.enqueue_many(conn, [NewJob("noop"), NewJob("noop", dedupe_key="k")])
    by_sql = await conn.fetchval("INSERT INTO job_queue (task_type) VALUES ('noop') RETURNING id")
    ids = [one.id, *many, by_sql]
    rows = await conn.fetch(
        "SELECT id, floor(date_part('epoch', created_at) * 1000)::bigint AS ms FROM job_queue WHERE id = ANY ($1)", ids)
    assert len(rows) == 4
    for row in rows:
        assert row["id"].version == 7 and row["id"].variant == uuid.RFC_4122
        assert _millis(row["id"]) == row["ms"]
        assert key_ms(row["id"]) == row["ms"]  # what cleanup's pacing reads (tests/unit/test_cleanup_spread.py)


async def test_jobs_enqueued_in_later_milliseconds_sort_after_earlier_ones_by_id(conn: asyncpg.Connection) -> None:
    made = []
    for _ in range(8):
        made.append(await queue.enqueue(conn, NewJob("noop")))
        await asyncio.sleep(0.003)
    in_id_order = [r["id"] for r in await conn.fetch("SELECT id FROM job_queue ORDER BY id")]
    assert in_id_order == [j.id for j in made]


async def test_the_ids_of_one_batch_share_its_millisecond_and_rise_in_the_batchs_order(
    conn: asyncpg.Connection,
) -> None:
    ids = await queue.enqueue_many(conn, [NewJob("noop") for _ in range(5000)])
    assert len(set(ids)) == 5000
    assert len({_millis(i) for i in ids}) == 1  # one statement, one transaction start
    assert ids == sorted(ids)  # migration 020: each row's entries go to the indexes' right edge
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    # The batch's number is below the random bits: the ids differ in the low 32 bits alone.
    assert len({i.int >> 32 for i in ids}) == 1


async def test_batches_in_one_transaction_get_distinct_ids_each_rising_and_skipped_dedupe_keys_leave_gaps(
    conn: asyncpg.Connection,
) -> None:
    async with conn.transaction():  # one now(): the batches share the millisecond, not the random head
        first = await queue.enqueue_many(conn, [NewJob("noop", dedupe_key=f"a{i}") for i in range(300)])
        second = await queue.enqueue_many(conn, [NewJob("noop") for _ in range(300)])
        third = await queue.enqueue_many(
            conn, [NewJob("noop", dedupe_key="a7"), *(NewJob("noop", dedupe_key=f"c{i}") for i in range(299))])
    assert len(first) == len(second) == 300 and len(third) == 299  # a7 is taken
    for batch in (first, second, third):
        assert batch == sorted(batch)
    assert len({*first, *second, *third}) == 899
    assert len({i.int >> 32 for i in (*first, *second, *third)}) == 3
    stored = {r["id"]: r["dedupe_key"] for r in await conn.fetch("SELECT id, dedupe_key FROM job_queue")}
    assert [stored[i] for i in third] == [f"c{i}" for i in range(299)]


async def test_a_batch_at_one_priority_and_run_at_is_claimed_in_the_batchs_order(conn: asyncpg.Connection) -> None:
    ids = await queue.enqueue_many(conn, [NewJob("noop", {"i": i}) for i in range(200)])
    claimed = []
    for _ in range(4):  # each claim picks the first 50 left, in the batch's order
        claimed.append(await queue.claim(conn, worker_id="w", task_types=["noop"], limit=50, lease_s=30))
    assert [[j.payload["i"] for j in c] for c in claimed] == [list(range(k, k + 50)) for k in range(0, 200, 50)]
    assert [j.id for c in claimed for j in c] == ids


async def test_ids_stored_before_migration_015_are_kept_and_later_jobs_get_time_ordered_ones(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with db.connection(empty_database_url) as conn:
        monkeypatch.setattr("worker.migrate.migration_files", lambda: tuple(m for m in migration_files() if m[0] < 15))
        await migrate(conn)
        old = await conn.fetchval("INSERT INTO job_queue (task_type) VALUES ('noop') RETURNING id")
        assert old.version == 4
        monkeypatch.undo()
        assert await migrate(conn) == [v for v, _, _ in migration_files() if v >= 15]
        assert await conn.fetchval("SELECT id FROM job_queue") == old
        assert (await queue.enqueue(conn, NewJob("noop"))).id.version == 7
