"""Retention cleanup's batches walk job_queue_pkey from the lowest id with a key, the last id of the batch before
(sql/queries/operator.sql `cleanup_batch`; migration 018): every expired job is deleted whatever it shares its
place with and whatever its id, and nothing else is; the
`cleanup` task does it in a chain of short pieces (worker/builtin/cleanup.py)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from tests.support.daemon import make_settings, running_daemon, wait_for
from tests.support.rows import make_job
from worker import operations, queue
from worker.builtin import default_registry

DAY = 86400.0
RETENTION = {"succeeded_older_than": timedelta(days=14), "failed_older_than": timedelta(days=60)}


async def _ids(conn: asyncpg.Connection) -> set[object]:
    return {r["id"] for r in await conn.fetch("SELECT id FROM job_queue")}


async def test_small_batches_delete_every_expired_job_between_the_kept_ones(conn: asyncpg.Connection) -> None:
    expired, kept = [], []
    for i in range(30):  # oldest first, each expired job followed by jobs the run must step over
        expired.append(await make_job(conn, status="succeeded", age_s=40 * DAY - i * 60))
        kept.append(await make_job(conn, status="failed", age_s=40 * DAY - i * 60 - 10))  # within 60 days
        kept.append(await make_job(conn, status="pending", age_s=40 * DAY - i * 60 - 20))
    kept.append(await make_job(conn, status="succeeded", age_s=DAY))
    result = await operations.cleanup(conn, **RETENTION, batch_size=4)
    assert (result.jobs, result.succeeded, result.runs, result.batches) == (30, 30, 30, 8)
    assert result.finished
    assert await _ids(conn) == set(kept)
    assert await conn.fetchval("SELECT count(*) FROM job_runs WHERE job_id = ANY($1::uuid[])", expired) == 0
    assert await conn.fetchval("SELECT count(*) FROM job_runs") == 31  # the kept finished jobs' ledger rows


async def test_jobs_created_in_one_statement_are_all_deleted_across_batches(conn: asyncpg.Connection) -> None:
    # One INSERT: every row has the same created_at and its id the same millisecond: only their random bits order
    # them within the key.
    await conn.execute("""
        WITH jobs AS (
            INSERT INTO job_queue (task_type, status, attempts, created_at, started_at, finished_at)
            SELECT 'noop', 'succeeded', 1, now() - interval '20 days', now() - interval '20 days',
                   now() - interval '20 days' FROM generate_series(1, 25)
            RETURNING id, started_at, finished_at)
        INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, duration_ms)
        SELECT id, 1, 'w', started_at, finished_at, 'succeeded', 0 FROM jobs""")
    young = await make_job(conn, status="succeeded", age_s=DAY)
    result = await operations.cleanup(conn, **RETENTION, batch_size=4)
    assert (result.jobs, result.runs, result.batches) == (25, 25, 7)
    assert await _ids(conn) == {young}


async def test_jobs_with_random_ids_are_deleted_wherever_their_ids_sort(conn: asyncpg.Connection) -> None:
    # ids stored before migration 015 are random: they sort anywhere among the time-ordered ones
    random_ids = [row["id"] for row in await conn.fetch("""
        INSERT INTO job_queue (id, task_type, status, attempts, created_at, finished_at)
        SELECT gen_random_uuid(), 'noop', 'succeeded', 1, now() - interval '20 days', now() - interval '20 days'
        FROM generate_series(1, 40) RETURNING id""")]
    timed = [await make_job(conn, status="succeeded", age_s=20 * DAY) for _ in range(5)]
    kept = [await make_job(conn, status="succeeded", age_s=DAY) for _ in range(3)]
    result = await operations.cleanup(conn, **RETENTION, batch_size=3)
    assert result.jobs == 45 and result.finished
    assert await _ids(conn) == set(kept) and not await _ids(conn) & {*random_ids, *timed}


async def test_a_batch_walks_the_primary_key_whatever_the_statistics_say(conn: asyncpg.Connection) -> None:
    # statistics taken while the queue held pending jobs only: a plan trusting them would scan the whole table and
    # sort every expired job for each batch
    await conn.execute("INSERT INTO job_queue (task_type) SELECT 'noop' FROM generate_series(1, 5000)")
    await conn.execute("ANALYZE job_queue")
    await conn.execute("""
        INSERT INTO job_queue (id, task_type, status, attempts, created_at, finished_at)
        SELECT job_queue_uuidv7_at(now() - interval '20 days'), 'noop', 'succeeded', 1, now() - interval '20 days',
               now() - interval '20 days' FROM generate_series(1, 30000)""")
    await conn.execute("SELECT pg_stat_force_next_flush()")
    scans = "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'job_queue'"
    before = await conn.fetchval(scans)
    result = await operations.cleanup(conn, **RETENTION, batch_size=1000, max_batches=3)
    await conn.execute("SELECT pg_stat_force_next_flush()")
    assert result.jobs == 3000 and await conn.fetchval(scans) == before


async def test_a_job_created_long_ago_but_finished_within_retention_is_kept(conn: asyncpg.Connection) -> None:
    long_running = await make_job(conn, status="succeeded", age_s=30 * DAY)
    await conn.execute("UPDATE job_queue SET finished_at = now() - interval '1 day' WHERE id = $1", long_running)
    expired = await make_job(conn, status="succeeded", age_s=20 * DAY)
    result = await operations.cleanup(conn, **RETENTION, batch_size=10)
    assert result.jobs == 1 and await _ids(conn) == {long_running} and expired not in await _ids(conn)


async def test_a_cleanup_with_a_duty_cycle_deletes_the_same_jobs(conn: asyncpg.Connection) -> None:
    expired = [await make_job(conn, status="cancelled", age_s=70 * DAY) for _ in range(5)]
    kept = [await make_job(conn, status="cancelled", age_s=50 * DAY) for _ in range(2)]
    result = await operations.cleanup(conn, **RETENTION, batch_size=2, duty_cycle_percent=90)
    assert (result.jobs, result.batches, result.finished) == (5, 3, True)
    assert await _ids(conn) == set(kept) and not await _ids(conn) & set(expired)


async def test_the_cleanup_task_deletes_in_a_chain_of_short_pieces_each_continuing_where_the_last_stopped(
    database_url: str, conn: asyncpg.Connection
) -> None:
    expired = [await make_job(conn, status="succeeded", age_s=3 * DAY) for _ in range(7)]
    kept = await make_job(conn, status="failed", age_s=3 * DAY)
    # no claim-ahead threshold: one batch per piece; no pause: each next piece is due at once
    settings = make_settings(database_url, retention_succeeded_days=1, retention_failed_days=5,
                             cleanup_batch_size=2, claim_ahead_below_ms=0, cleanup_duty_cycle_percent=100)
    async with running_daemon(settings, default_registry(settings)):
        first = (await queue.enqueue(conn, queue.NewJob("cleanup"))).id

        async def done() -> bool:
            return not await conn.fetchval("SELECT count(*) FROM job_queue WHERE task_type = 'cleanup' "
                                           "AND status IN ('pending', 'running')")

        await wait_for(done)
    pieces = await conn.fetch("SELECT id, status, result, payload FROM job_queue WHERE task_type = 'cleanup' "
                              "ORDER BY created_at, id")
    assert pieces[0]["id"] == first and [p["status"] for p in pieces] == ["succeeded"] * 4
    assert [p["result"]["jobs"] for p in pieces] == [2, 2, 2, 1]
    assert [p["payload"].get("deleted_before", 0) for p in pieces] == [0, 2, 4, 6]
    ids = await _ids(conn)
    assert kept in ids and not ids & set(expired)
