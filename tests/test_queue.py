import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.daemon import wait_for
from worker import queue
from worker.errors import InvalidInput, JobNotFound, JobStateConflict
from worker.queue import Finished, NewJob
from worker.sql import queries


async def test_enqueue_inserts_a_pending_row_with_payload_and_run_at(conn: asyncpg.Connection) -> None:
    run_at = datetime.now(UTC) + timedelta(minutes=5)
    res = await queue.enqueue(conn, NewJob("noop", {"a": 1, "nested": {"b": [1, 2]}}, run_at=run_at, priority=3))
    assert res.created
    row = await queue.get_job(conn, res.id)
    assert row["status"] == "pending"
    assert row["payload"] == {"a": 1, "nested": {"b": [1, 2]}}
    assert row["run_at"] == run_at
    assert row["priority"] == 3 and row["attempts"] == 0 and row["max_attempts"] == 5


async def test_enqueue_inside_a_rolled_back_transaction_leaves_nothing(conn: asyncpg.Connection) -> None:
    tr = conn.transaction()
    await tr.start()
    await queue.enqueue(conn, NewJob("noop"))
    await tr.rollback()
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 0


async def test_dedupe_key_returns_the_existing_pending_job(conn: asyncpg.Connection) -> None:
    first = await queue.enqueue(conn, NewJob("noop", dedupe_key="k1"))
    second = await queue.enqueue(conn, NewJob("noop", {"x": 1}, dedupe_key="k1"))
    assert first.created and not second.created and second.id == first.id
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 1


async def test_dedupe_key_is_free_again_once_the_job_finished(conn: asyncpg.Connection) -> None:
    first = await queue.enqueue(conn, NewJob("noop", dedupe_key="k1"))
    await conn.execute("UPDATE job_queue SET status = 'succeeded' WHERE id = $1", first.id)
    again = await queue.enqueue(conn, NewJob("noop", dedupe_key="k1"))
    assert again.created and again.id != first.id


async def test_enqueue_many_inserts_a_batch_in_one_statement(conn: asyncpg.Connection) -> None:
    ids = await queue.enqueue_many(conn, [NewJob("noop", {"i": i}) for i in range(500)])
    assert len(set(ids)) == 500
    assert await conn.fetchval("SELECT count(*) FROM job_queue WHERE status = 'pending'") == 500



async def test_enqueue_many_keeps_each_jobs_own_columns_and_returns_ids_in_the_batchs_order(
    conn: asyncpg.Connection,
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    jobs = [
        NewJob("noop", {"i": 0}),
        NewJob("other", {"i": 1}, run_at=later, priority=7, max_attempts=2),
        NewJob("noop", {"i": 2}, priority=-3),
    ]
    ids = await queue.enqueue_many(conn, jobs)
    rows = [await queue.get_job(conn, i) for i in ids]
    assert [(r["task_type"], r["payload"], r["priority"], r["max_attempts"]) for r in rows] == [
        ("noop", {"i": 0}, 0, 5), ("other", {"i": 1}, 7, 2), ("noop", {"i": 2}, -3, 5)
    ]
    assert rows[1]["run_at"] == later and rows[0]["run_at"] < later and rows[2]["run_at"] < later


async def test_enqueue_many_of_one_shared_column_set_stores_it_on_every_job(conn: asyncpg.Connection) -> None:
    ids = await queue.enqueue_many(conn, [NewJob("other", {"i": i}, priority=9, max_attempts=1) for i in range(3)])
    rows = [await queue.get_job(conn, i) for i in ids]
    assert [(r["task_type"], r["payload"]["i"], r["priority"], r["max_attempts"]) for r in rows] == [
        ("other", i, 9, 1) for i in range(3)
    ]


async def test_enqueue_many_skips_the_jobs_whose_dedupe_key_is_taken(conn: asyncpg.Connection) -> None:
    taken = await queue.enqueue(conn, NewJob("noop", dedupe_key="k1"))
    ids = await queue.enqueue_many(conn, [
        NewJob("noop", {"i": 0}, dedupe_key="k1"),
        NewJob("noop", {"i": 1}, dedupe_key="k2"),
        NewJob("noop", {"i": 2}),
        NewJob("noop", {"i": 3}, dedupe_key="k2"),
    ])
    assert taken.id not in ids
    assert [(await queue.get_job(conn, i))["payload"]["i"] for i in ids] == [1, 2]
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 3


async def test_enqueue_many_of_only_taken_dedupe_keys_creates_nothing(conn: asyncpg.Connection) -> None:
    await queue.enqueue(conn, NewJob("noop", dedupe_key="k1"))
    assert await queue.enqueue_many(conn, [NewJob("noop", dedupe_key="k1")]) == []
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 1

@pytest.mark.parametrize(
    "job",
    [
        NewJob("Bad Type"),
        NewJob(""),
        NewJob("x" * 65),
        NewJob("noop", payload=[1, 2]),  # type: ignore[arg-type]
        NewJob("noop", payload={"big": "x" * 70000}),
        NewJob("noop", priority=5000),
        NewJob("noop", max_attempts=0),
        NewJob("noop", dedupe_key=""),
        NewJob("noop", dedupe_key="k" * 300),
        NewJob("noop", run_at=datetime(2026, 1, 1)),
    ],
)
async def test_bad_enqueue_is_rejected_and_inserts_nothing(conn: asyncpg.Connection, job: NewJob) -> None:
    with pytest.raises(InvalidInput):
        await queue.enqueue(conn, job)
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 0


async def test_database_constraints_reject_what_the_api_rejects(conn: asyncpg.Connection) -> None:
    bad = [
        "INSERT INTO job_queue (task_type) VALUES ('Bad Type')",
        "INSERT INTO job_queue (task_type, payload) VALUES ('noop', '[1]')",
        "INSERT INTO job_queue (task_type, payload) VALUES ('noop', jsonb_build_object('x', repeat('a', 70000)))",
        "INSERT INTO job_queue (task_type, dedupe_key) VALUES ('noop', repeat('k', 300))",
        "INSERT INTO job_queue (task_type, max_attempts) VALUES ('noop', 0)",
    ]
    for sql in bad:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(sql)
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 0


@pytest.mark.parametrize("recover", [False, True])
async def test_claim_orders_by_priority_then_run_at_and_only_due_jobs(
    conn: asyncpg.Connection, recover: bool
) -> None:
    now = datetime.now(UTC)
    low_old = await queue.enqueue(conn, NewJob("noop", run_at=now - timedelta(minutes=2)))
    high = await queue.enqueue(conn, NewJob("noop", priority=10, run_at=now - timedelta(minutes=1)))
    low_new = await queue.enqueue(conn, NewJob("noop", run_at=now - timedelta(minutes=1)))
    await queue.enqueue(conn, NewJob("noop", run_at=now + timedelta(hours=1)))
    if recover:
        jobs, _ = await queue.recover_and_claim(conn, worker_id="w", task_types=["noop"], limit=10, lease_s=30)
    else:
        jobs = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=10, lease_s=30)
    assert [j.id for j in jobs] == [high.id, low_old.id, low_new.id]
    assert all(j.attempt == 1 for j in jobs)
    row = await queue.get_job(conn, high.id)
    assert row["status"] == "running" and row["locked_by"] == "w" and row["locked_until"] > now


async def test_claim_takes_only_task_types_it_handles(conn: asyncpg.Connection) -> None:
    await queue.enqueue(conn, NewJob("other"))
    assert await queue.claim(conn, worker_id="w", task_types=["noop"], limit=10, lease_s=30) == []
    assert (await conn.fetchrow("SELECT status FROM job_queue"))["status"] == "pending"


async def test_concurrent_claimers_never_get_the_same_job(database_url: str) -> None:
    from worker import db

    setup = await db.connect(database_url)
    await queue.enqueue_many(setup, [NewJob("noop", {"i": i}) for i in range(300)])
    conns = [await db.connect(database_url) for _ in range(6)]
    claimed: list[uuid.UUID] = []

    async def claimer(c: asyncpg.Connection, wid: str) -> None:
        while True:
            jobs = await queue.claim(c, worker_id=wid, task_types=["noop"], limit=7, lease_s=30)
            if not jobs:
                return
            claimed.extend(j.id for j in jobs)

    try:
        await asyncio.gather(*(claimer(c, f"w{i}") for i, c in enumerate(conns)))
        assert len(claimed) == 300
        assert len(set(claimed)) == 300
    finally:
        for c in [setup, *conns]:
            await c.close()


def _finished(job: queue.Job, status: str, outcome: str, **kw: object) -> Finished:
    now = datetime.now(UTC)
    return Finished(job_id=job.id, task_type=job.task_type, attempt=job.attempt, status=status,  # type: ignore[arg-type]
                    outcome=outcome, started_at=job.started_at, finished_at=now, duration_ms=5, **kw)  # type: ignore[arg-type]


async def test_finish_records_status_result_and_ledger_in_one_call(conn: asyncpg.Connection) -> None:
    a = await queue.enqueue(conn, NewJob("noop"))
    b = await queue.enqueue(conn, NewJob("noop"))
    ja, jb = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=2, lease_s=30)
    retry_at = datetime.now(UTC) + timedelta(minutes=1)
    fa = _finished(ja, "succeeded", "succeeded", result={"ok": True})
    fb = _finished(jb, "pending", "retry", error="boom", retry_at=retry_at)
    acked = await queue.finish(conn, "w", [fa, fb])
    assert acked == {a.id, b.id}
    done = await queue.get_job(conn, ja.id)
    assert done["status"] == "succeeded" and done["result"] == {"ok": True}
    assert done["finished_at"] == fa.finished_at  # to the microsecond
    again = await queue.get_job(conn, jb.id)
    assert again["status"] == "pending" and again["last_error"] == "boom" and again["run_at"] == retry_at
    runs = await queue.job_runs(conn, jb.id)
    assert [(r["attempt"], r["outcome"], r["error"], r["worker_id"]) for r in runs] == [(1, "retry", "boom", "w")]
    assert (runs[0]["started_at"], runs[0]["finished_at"]) == (jb.started_at, fb.finished_at)



async def test_finish_keeps_each_attempts_own_result_and_error_in_a_mixed_batch(conn: asyncpg.Connection) -> None:
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(3)])
    ja, jb, jc = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=3, lease_s=30)
    fa = _finished(ja, "succeeded", "succeeded", result={"a,b": 'x", {y}'})
    fb = _finished(jb, "failed", "failed", error='ValueError: a, "b", {c}')
    fc = _finished(jc, "succeeded", "succeeded")
    assert await queue.finish(conn, "w", [fa, fb, fc]) == {ja.id, jb.id, jc.id}
    rows = [await queue.get_job(conn, j.id) for j in (ja, jb, jc)]
    assert [(r["status"], r["result"], r["last_error"]) for r in rows] == [
        ("succeeded", {"a,b": 'x", {y}'}, None), ("failed", None, 'ValueError: a, "b", {c}'), ("succeeded", None, None)
    ]
    assert [r["finished_at"] for r in rows] == [fa.finished_at, fb.finished_at, fc.finished_at]
    assert [(r["error"], r["duration_ms"]) for r in await queue.job_runs(conn, jb.id)] == [(fb.error, 5)]

async def test_finish_ignores_a_job_whose_lease_is_held_by_someone_else(conn: asyncpg.Connection) -> None:
    await queue.enqueue(conn, NewJob("noop"))
    (job,) = await queue.claim(conn, worker_id="w1", task_types=["noop"], limit=1, lease_s=30)
    acked = await queue.finish(conn, "w2", [_finished(job, "succeeded", "succeeded")])
    assert acked == set()
    assert (await queue.get_job(conn, job.id))["status"] == "running"
    assert await queue.job_runs(conn, job.id) == []


async def test_heartbeat_extends_only_our_leases(conn: asyncpg.Connection) -> None:
    await queue.enqueue(conn, NewJob("noop"))
    (job,) = await queue.claim(conn, worker_id="w1", task_types=["noop"], limit=1, lease_s=1)
    before = (await queue.get_job(conn, job.id))["locked_until"]
    assert await queue.heartbeat(conn, "w1", [job.id], 60) == {job.id}
    assert (await queue.get_job(conn, job.id))["locked_until"] > before
    assert await queue.heartbeat(conn, "w2", [job.id], 60) == set()


async def test_expired_lease_is_recovered_to_pending_with_an_abandoned_ledger_row(conn: asyncpg.Connection) -> None:
    await queue.enqueue(conn, NewJob("noop"))
    (job,) = await queue.claim(conn, worker_id="dead", task_types=["noop"], limit=1, lease_s=30)
    await conn.execute("UPDATE job_queue SET locked_until = now() - interval '1 second'")
    recovered = await queue.recover_expired(conn)
    assert [(r["id"], r["status"], r["locked_by"]) for r in recovered] == [(job.id, "pending", "dead")]
    row = await queue.get_job(conn, job.id)
    assert row["status"] == "pending" and row["locked_by"] is None and "lease expired" in row["last_error"]
    runs = await queue.job_runs(conn, job.id)
    assert [(r["attempt"], r["outcome"], r["worker_id"]) for r in runs] == [(1, "abandoned", "dead")]
    (again,) = await queue.claim(conn, worker_id="alive", task_types=["noop"], limit=1, lease_s=30)
    assert again.id == job.id and again.attempt == 2


async def test_expired_lease_on_the_last_attempt_fails_the_job(conn: asyncpg.Connection) -> None:
    await queue.enqueue(conn, NewJob("noop", max_attempts=1))
    await queue.claim(conn, worker_id="dead", task_types=["noop"], limit=1, lease_s=30)
    await conn.execute("UPDATE job_queue SET locked_until = now() - interval '1 second'")
    (row,) = await queue.recover_expired(conn)
    assert row["status"] == "failed"


async def test_unexpired_leases_are_not_recovered(conn: asyncpg.Connection) -> None:
    await queue.enqueue(conn, NewJob("noop"))
    await queue.claim(conn, worker_id="w", task_types=["noop"], limit=1, lease_s=30)
    assert await queue.recover_expired(conn) == []


async def test_release_hands_jobs_back_without_counting_the_attempt(conn: asyncpg.Connection) -> None:
    await queue.enqueue(conn, NewJob("noop"))
    (job,) = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=1, lease_s=30)
    assert await queue.release(conn, "w", [(job.id, job.attempt, job.started_at)]) == {job.id}
    row = await queue.get_job(conn, job.id)
    assert row["status"] == "pending" and row["attempts"] == 0 and row["locked_by"] is None
    runs = await queue.job_runs(conn, job.id)
    assert [r["outcome"] for r in runs] == ["interrupted"]


async def test_cancel_and_retry_now(conn: asyncpg.Connection) -> None:
    res = await queue.enqueue(conn, NewJob("noop", run_at=datetime.now(UTC) + timedelta(hours=1)))
    assert await queue.cancel(conn, [res.id]) == [res.id]
    assert (await queue.get_job(conn, res.id))["status"] == "cancelled"
    with pytest.raises(JobStateConflict):
        await queue.cancel(conn, [res.id])
    assert await queue.retry_now(conn, [res.id]) == [res.id]
    row = await queue.get_job(conn, res.id)
    assert row["status"] == "pending" and row["run_at"] <= datetime.now(UTC)


async def test_retry_now_of_an_exhausted_failed_job_grants_one_more_attempt(conn: asyncpg.Connection) -> None:
    res = await queue.enqueue(conn, NewJob("noop", max_attempts=1))
    (job,) = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=1, lease_s=30)
    await queue.finish(conn, "w", [_finished(job, "failed", "failed", error="x")])
    await queue.retry_now(conn, [res.id])
    (again,) = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=1, lease_s=30)
    assert again.attempt == 2 and again.max_attempts == 2


async def test_actions_on_unknown_or_forbidden_jobs_change_nothing(conn: asyncpg.Connection) -> None:
    ok = await queue.enqueue(conn, NewJob("noop"))
    with pytest.raises(JobNotFound):
        await queue.cancel(conn, [ok.id, uuid.uuid4()])
    assert (await queue.get_job(conn, ok.id))["status"] == "pending"
    await queue.claim(conn, worker_id="w", task_types=["noop"], limit=1, lease_s=30)
    with pytest.raises(JobStateConflict, match="running"):
        await queue.retry_now(conn, [ok.id])
    assert (await queue.get_job(conn, ok.id))["status"] == "running"


def test_parse_job_id_rejects_garbage() -> None:
    with pytest.raises(InvalidInput, match="not a job id"):
        queue.parse_job_id("12; drop table job_queue")


class _Recorder:
    """An executor that records the statement and arguments it is given (to EXPLAIN them) and returns no rows."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        self.calls.append((query, args))
        return []


async def _explain_analyze(conn: asyncpg.Connection, sql: str, *args: Any) -> Any:
    """The plan of `sql` as run (EXPLAIN ANALYZE runs it: inside a transaction that is rolled back)."""
    tx = conn.transaction()
    await tx.start()
    try:
        explained = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    finally:
        await tx.rollback()
    return (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]


def _join_filter_rejections(plan: Any) -> int:
    return int(plan.get("Rows Removed by Join Filter", 0)) + sum(
        _join_filter_rejections(p) for p in plan.get("Plans", [])
    )


@pytest.mark.parametrize("statement", ["finish", "release"])
async def test_a_large_batch_is_recorded_without_comparing_every_row_with_every_other(
    conn: asyncpg.Connection, statement: str
) -> None:
    # Statistics taken while no job ran say no row has a locked_by: planned from those, a lease test written
    # as a filter looked like one row and the batch was matched against the table row by row (quadratic).
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(20_000)])
    await conn.execute("ANALYZE job_queue")
    jobs = await queue.claim(conn, worker_id="w1", task_types=["noop"], limit=500, lease_s=60)
    assert len(jobs) == 500
    recorder = _Recorder()
    if statement == "finish":
        await queue.finish(recorder, "w1", [_finished(j, "succeeded", "succeeded") for j in jobs])
    else:
        await queue.release(recorder, "w1", [(j.id, j.attempt, j.started_at) for j in jobs])
    ((sql, args),) = recorder.calls
    plan = await _explain_analyze(conn, sql, *args)
    written = {  # the rows each writing node was given
        p["Relation Name"]: p["Plans"][0]["Actual Rows"] for p in _nodes(plan) if p["Node Type"] == "ModifyTable"
    }
    assert written == {"job_queue": 500, "job_runs": 500}  # every job recorded, each with its ledger row
    assert _join_filter_rejections(plan) == 0, json.dumps(plan, indent=1)


def _nodes(plan: Any) -> list[Any]:
    return [plan] + [n for p in plan.get("Plans", []) for n in _nodes(p)]


def _scans(plan: Any) -> list[tuple[str, str]]:
    """(node type, relation) of every node of a plan that reads a table."""
    here = [(plan["Node Type"], plan["Relation Name"])] if "Relation Name" in plan else []
    return here + [s for p in plan.get("Plans", []) for s in _scans(p)]


@pytest.mark.parametrize("statement", ["claim", "recover_and_claim"])
async def test_a_large_claim_reads_the_rows_it_claims_not_the_whole_table(
    conn: asyncpg.Connection, statement: str
) -> None:
    # Joined to the picked ids, the update of a large claim was planned as a hash join over a sequential scan of
    # job_queue: every claim of a busy worker read every row (finished ones included) to update a few hundred.
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(20_000)])
    await conn.execute("ANALYZE job_queue")
    args: tuple[Any, ...] = (["noop"], 800, "w1", 30.0, None) + ((10,) if statement == "recover_and_claim" else ())
    plan = await _explain_analyze(conn, queries("queue")[statement], *args)
    scans = _scans(plan)
    assert ("ModifyTable", "job_queue") in scans
    assert ("Seq Scan", "job_queue") not in scans, json.dumps(plan, indent=1)
    jobs = await queue.claim(conn, worker_id="w1", task_types=["noop"], limit=800, lease_s=30)
    assert len(jobs) == 800 and len({j.id for j in jobs}) == 800


async def test_an_idle_queues_claims_reuse_one_generic_plan(conn: asyncpg.Connection) -> None:
    # Planning the claim anew for every wake-up cost a one-job claim ~0.2 ms of its ~0.6; PostgreSQL switches a
    # prepared statement to a generic plan after five executions only when that plan's estimate is no worse.
    for _ in range(10):
        await queue.enqueue(conn, NewJob("noop"))
        (job,) = await queue.claim(conn, worker_id="w1", task_types=["noop", "other"], limit=10, lease_s=30)
        await queue.finish(conn, "w1", [_finished(job, "succeeded", "succeeded")])
    plans = await conn.fetchrow(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
        queries("queue")["claim"],
    )
    assert plans is not None and plans["generic_plans"] >= 4, dict(plans or {})


async def test_a_finish_locks_each_row_at_most_once(conn: asyncpg.Connection) -> None:
    """Recording a finished job must not lock its row a second time. A BEFORE UPDATE row trigger made PostgreSQL
    lock every updated row before the update (a WAL record each), whether or not the trigger fired; the only
    tuple lock left is the one PostgreSQL takes when the new row version goes to another page."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(300)])
    jobs = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=300, lease_s=30)
    start = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
    acked = await queue.finish(conn, "w", [_finished(j, "succeeded", "succeeded") for j in jobs])
    end = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
    assert len(acked) == 300
    # pg_walinspect reads only flushed WAL; other sessions' asynchronous commits may leave the flush behind.
    await wait_for(lambda: conn.fetchval("SELECT pg_current_wal_flush_lsn() >= $1", end), timeout_s=10)
    stats = {
        r["kind"]: r["count"]
        for r in await conn.fetch(
            'SELECT "resource_manager/record_type" AS kind, count FROM pg_get_wal_stats($1, $2, true)', start, end
        )
    }
    assert stats.get("Heap/UPDATE", 0) + stats.get("Heap/UPDATE+INIT", 0) + stats.get("Heap/HOT_UPDATE", 0) == 300
    assert stats.get("Heap/LOCK", 0) <= 300


async def test_claimed_jobs_carry_their_row_s_start_to_the_microsecond(conn: asyncpg.Connection) -> None:
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(50)])
    jobs = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=30, lease_s=30)
    more, _ = await queue.recover_and_claim(conn, worker_id="w", task_types=["noop"], limit=20, lease_s=30)
    stored = dict(await conn.fetch("SELECT id, started_at FROM job_queue"))
    for job in [*jobs, *more]:
        assert job.started_at == stored[job.id] and job.started_at.utcoffset() == timedelta(0)
    assert jobs[0].started_at != more[0].started_at  # two claims, two starts
