"""The listings' order without job_queue_created_idx (migration 018): newest first by (created_at in milliseconds,
id), the jobs whose id carries their created_at over job_queue_pkey, the others (ids stored before 015, an id or a
created_at written by a client, a created_at changed later) over job_queue_untimed_created_idx, merged by the
migration's job_queue_list (sql/queries/operator.sql `list_jobs`). A page reads about a page of each index,
whatever its depth."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from worker import operations, queue
from worker.errors import InvalidInput, JobNotFound
from worker.http.admin.data import decode_cursor, encode_cursor
from worker.queue import NewJob

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def _ms(t: datetime) -> int:
    return (t - EPOCH) // MS


async def _mixed(conn: asyncpg.Connection) -> None:
    """Jobs of every kind over the last hour, interleaved in time, several within one millisecond."""
    base = datetime.now(UTC) - timedelta(hours=1)
    # timed: ids made for their created_at, as an enqueue makes them; three share each millisecond
    await conn.execute("""
        INSERT INTO job_queue (id, task_type, created_at)
        SELECT job_queue_uuidv7_at(t), 'timed', t
        FROM (SELECT $1::timestamptz + (g / 3) * interval '7 s' + (g % 3) * interval '1 us' AS t
              FROM generate_series(0, 59) AS g) AS s""", base)
    # random (version 4) ids, as stored before 015: some in the same milliseconds as timed jobs
    await conn.execute("""
        INSERT INTO job_queue (id, task_type, created_at)
        SELECT gen_random_uuid(), 'legacy', $1::timestamptz + g * interval '5 s'
        FROM generate_series(0, 29) AS g""", base)
    # enqueued now, then given an older created_at: its id no longer carries it
    moved = await queue.enqueue(conn, NewJob("moved"))
    await conn.execute("UPDATE job_queue SET created_at = $2 WHERE id = $1", moved.id, base + timedelta(seconds=33))
    for _ in range(3):
        await queue.enqueue(conn, NewJob("now"))


async def _expected(conn: asyncpg.Connection, where: str = "true", *args: Any) -> list[uuid.UUID]:
    rows = await conn.fetch(f"SELECT id, created_at FROM job_queue WHERE {where}", *args)
    return [r["id"] for r in sorted(rows, key=lambda r: (_ms(r["created_at"]), r["id"]), reverse=True)]


async def test_jobs_enqueued_with_the_default_id_write_no_entry_to_the_untimed_index(conn: asyncpg.Connection) -> None:
    ids = await queue.enqueue_many(conn, [NewJob("noop") for _ in range(2000)])
    await conn.execute("UPDATE job_queue SET status = 'running', attempts = 1, locked_by = 'w', started_at = now(), "
                       "locked_until = now() + interval '1 minute' WHERE id = ANY ($1)", ids[:1000])
    await conn.execute("UPDATE job_queue SET status = 'succeeded', locked_by = NULL, locked_until = NULL, "
                       "finished_at = now() WHERE id = ANY ($1)", ids[:500])
    await conn.fetchval("INSERT INTO job_queue (task_type) VALUES ('by_sql') RETURNING id")
    assert await conn.fetchval("SELECT count(*) FROM job_queue WHERE NOT job_queue_id_carries(id, created_at)") == 0
    # an index that never had an entry is its metapage alone
    assert await conn.fetchval("SELECT pg_relation_size('job_queue_untimed_created_idx')") == 8192
    assert await conn.fetchval("SELECT to_regclass('job_queue_created_idx')") is None


async def test_pages_list_every_job_once_newest_first_by_created_millisecond_then_id(conn: asyncpg.Connection) -> None:
    await _mixed(conn)
    untimed = await conn.fetchval("SELECT count(*) FROM job_queue WHERE NOT job_queue_id_carries(id, created_at)")
    assert untimed == 31  # the legacy ids and the moved job: both branches are exercised
    expected = await _expected(conn)
    for limit in (1, 4, 7, 200):
        seen: list[uuid.UUID] = []
        after = None
        while True:
            page = await operations.list_page(conn, after=after, limit=limit)
            seen += [r["id"] for r in page]
            if len(page) < limit:
                break
            after = (page[-1]["listed_ms"], page[-1]["id"])
        assert seen == expected, limit


async def test_the_cli_list_continues_after_a_job_id_of_either_kind(conn: asyncpg.Connection) -> None:
    await _mixed(conn)
    expected = await _expected(conn)
    seen: list[uuid.UUID] = []
    after = None
    while True:
        page = await operations.list_jobs(conn, limit=5, after=after)
        assert all("listed_ms" not in r for r in page)
        seen += [r["id"] for r in page]
        if len(page) < 5:
            break
        after = page[-1]["id"]
    assert seen == expected
    with pytest.raises(JobNotFound):
        await operations.list_jobs(conn, after=uuid.uuid4())


async def test_created_filters_and_the_other_filters_apply_to_both_kinds_of_id(conn: asyncpg.Connection) -> None:
    await _mixed(conn)
    base = await conn.fetchval("SELECT min(created_at) FROM job_queue")
    since, until = base + timedelta(seconds=40), base + timedelta(seconds=100, microseconds=500)
    page = await operations.list_page(conn, since=since, until=until, limit=200)
    assert [r["id"] for r in page] == await _expected(
        conn, "job_queue_millis(created_at) >= job_queue_millis($1) AND job_queue_millis(created_at) < "
        "job_queue_millis($2)", since, until)
    assert {r["task_type"] for r in page} == {"timed", "legacy"}
    legacy = await operations.list_page(conn, task_type="legacy", since=since, limit=200)
    assert [r["id"] for r in legacy] == await _expected(
        conn, "task_type = 'legacy' AND job_queue_millis(created_at) >= job_queue_millis($1)", since)
    await conn.execute("UPDATE job_queue SET status = 'failed', last_error = 'boom 50%' WHERE task_type = 'moved'")
    failed = await operations.list_page(conn, status="failed", error_pattern="%50\\%%", limit=200)
    assert [r["task_type"] for r in failed] == ["moved"]


async def _reads(conn: asyncpg.Connection) -> dict[str, int]:
    """Entries read from each index of job_queue so far (a bitmap scan's included), and its sequential scans."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    rows = await conn.fetch("SELECT indexrelname, idx_tup_read FROM pg_stat_user_indexes WHERE relname = 'job_queue'")
    reads = {r["indexrelname"]: int(r["idx_tup_read"]) for r in rows}
    reads["seq_scan"] = await conn.fetchval("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'job_queue'")
    return reads


@pytest.mark.parametrize("statistics", ["none", "analyzed"])
async def test_a_page_reads_about_a_page_of_each_index_at_any_depth(conn: asyncpg.Connection, statistics: str) -> None:
    await conn.execute("""
        INSERT INTO job_queue (id, task_type, status, created_at, finished_at)
        SELECT job_queue_uuidv7_at(t), 'noop', 'succeeded', t, t
        FROM (SELECT now() - interval '2 days' + g * interval '1 s' AS t FROM generate_series(1, 100000) AS g) AS s""")
    # random ids, as stored before 015: most of them sort above every time-ordered id
    await conn.execute("""
        INSERT INTO job_queue (id, task_type, created_at)
        SELECT gen_random_uuid(), 'noop', now() - interval '3 days' + g * interval '1 s'
        FROM generate_series(1, 5000) AS g""")
    if statistics == "analyzed":
        await conn.execute("ANALYZE job_queue")
    middle = await conn.fetchrow("SELECT job_queue_millis(created_at) AS ms, id FROM job_queue "
                                 "WHERE status = 'succeeded' ORDER BY id OFFSET 50000 LIMIT 1")
    deep = await conn.fetchrow("SELECT job_queue_millis(created_at) AS ms, id FROM job_queue "
                               "WHERE status = 'pending' ORDER BY created_at DESC, id DESC OFFSET 2000 LIMIT 1")
    for after in [None, (middle["ms"], middle["id"]), (deep["ms"], deep["id"])]:
        before = await _reads(conn)
        page = await operations.list_page(conn, after=after, limit=50)
        read = {k: v - before[k] for k, v in (await _reads(conn)).items()}
        assert len(page) == 50
        assert read.pop("job_queue_pkey") <= 60 and read.pop("job_queue_untimed_created_idx") <= 51, read
        assert not any(read.values()), read  # no other index, no sequential scan


async def test_the_first_page_lists_no_job_whose_id_and_created_at_are_more_than_a_day_ahead(
    conn: asyncpg.Connection,
) -> None:
    # The pkey branch stops a day past now (the bound that keeps it from stepping over random ids above it); a job
    # whose id carries a later time can only come from a client writing both its id and its created_at.
    ahead = datetime.now(UTC) + timedelta(days=2)
    far = await conn.fetchval("INSERT INTO job_queue (id, task_type, created_at) VALUES (job_queue_uuidv7_at($1), "
                              "'noop', $1) RETURNING id", ahead)
    near = await conn.fetchval("INSERT INTO job_queue (id, task_type, created_at) VALUES (job_queue_uuidv7_at($1), "
                               "'noop', $1) RETURNING id", ahead - timedelta(days=1, minutes=5))
    untimed = await conn.fetchval("INSERT INTO job_queue (id, task_type, created_at) VALUES (gen_random_uuid(), "
                                  "'noop', $1) RETURNING id", ahead)
    listed = [r["id"] for r in await operations.list_page(conn, limit=10)]
    assert listed == [untimed, near]
    assert far not in listed


def test_the_admin_cursor_carries_the_listing_place_and_still_reads_one_from_before_migration_018() -> None:
    job_id = uuid.uuid4()
    assert decode_cursor(encode_cursor(1_765_000_000_123, job_id)) == (1_765_000_000_123, job_id)
    assert decode_cursor(encode_cursor(2**62, job_id)) == (2**62, job_id)  # created_at 'infinity'
    older = base64.urlsafe_b64encode(f"2025-12-06T05:46:40.123456+00:00|{job_id}".encode()).decode().rstrip("=")
    assert decode_cursor(older) == (1_765_000_000_123, job_id)
    for bad in (f"{2**63}|{job_id}", f"12|{job_id}x", "2025-12-06T05:46:40|" + str(job_id), "١٢|" + str(job_id)):
        with pytest.raises(InvalidInput, match="cursor is not one this API returned"):
            decode_cursor(base64.urlsafe_b64encode(bad.encode()).decode())


async def test_a_created_at_of_infinity_is_stored_and_listed_first_and_minus_infinity_last(
    conn: asyncpg.Connection,
) -> None:
    await _mixed(conn)
    last = await conn.fetchval("INSERT INTO job_queue (task_type, created_at) VALUES ('x', '-infinity') RETURNING id")
    first = await conn.fetchval("INSERT INTO job_queue (task_type, created_at) VALUES ('x', 'infinity') RETURNING id")
    seen: list[uuid.UUID] = []
    after = None
    while page := await operations.list_page(conn, after=after, limit=4):
        seen += [r["id"] for r in page]
        after = (page[-1]["listed_ms"], page[-1]["id"])
    assert seen[0] == first and seen[-1] == last and len(seen) == len(set(seen)) == 96
