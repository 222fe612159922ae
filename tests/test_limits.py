"""Global concurrency limits inside the claim (migration 010): concurrent claims from many connections never run
more jobs of a limited type than its limit, a full limited type starves no other type, a per-key limit holds per
payload value, and a finished limited job wakes the replicas waiting for its slot."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from worker import limits, queue
from worker.runtime.runner import success
from worker.tasks import EmptyPayload, Registry, Task

_JOBS = """
INSERT INTO job_queue (task_type, payload, priority, run_at)
SELECT $1, $2::text::jsonb, $3, now() - interval '1 minute' + g * interval '1 ms' FROM generate_series(1, $4) AS g"""


async def _limit(conn: asyncpg.Connection, task_type: str, n: int, key: str | None = None) -> None:
    await conn.execute("INSERT INTO job_queue_limits (task_type, max_running, key_field) VALUES ($1, $2, $3)",
                       task_type, n, key)


async def _running(conn: asyncpg.Connection, task_type: str) -> int:
    n: int = await conn.fetchval(
        "SELECT count(*) FROM job_queue WHERE status = 'running' AND task_type = $1", task_type)
    return n


async def test_concurrent_claims_from_many_connections_never_run_more_jobs_of_a_type_than_its_limit(
    conn: asyncpg.Connection, database_url: str,
) -> None:
    await _limit(conn, "lim", 2)
    await conn.execute(_JOBS, "lim", "{}", 0, 50)
    await conn.execute(_JOBS, "noop", "{}", 0, 200)
    claimers = [await asyncpg.connect(database_url) for _ in range(8)]
    try:
        async def claim_all(c: asyncpg.Connection, i: int) -> list[queue.Job]:
            got: list[queue.Job] = []
            for _ in range(10):
                got += await queue.claim(c, worker_id=f"w{i}", task_types=["lim", "noop"], limit=7, lease_s=30)
            return got

        results = await asyncio.gather(*(claim_all(c, i) for i, c in enumerate(claimers)))
    finally:
        for c in claimers:
            await c.close()
    claimed = [j for r in results for j in r]
    assert sum(j.task_type == "lim" for j in claimed) == 2
    assert sum(j.task_type == "noop" for j in claimed) == 200
    assert await _running(conn, "lim") == 2


async def test_a_full_limited_type_ahead_in_the_queue_does_not_starve_the_other_types(
    conn: asyncpg.Connection,
) -> None:
    await _limit(conn, "lim", 1)
    await conn.execute(_JOBS, "lim", "{}", 10, 50)  # higher priority: walked first
    await conn.execute(_JOBS, "noop", "{}", 0, 30)
    first = await queue.claim(conn, worker_id="w", task_types=["lim", "noop"], limit=10, lease_s=30)
    assert sorted(j.task_type for j in first) == ["lim"] + ["noop"] * 9
    second = await queue.claim(conn, worker_id="w", task_types=["lim", "noop"], limit=10, lease_s=30)
    assert [j.task_type for j in second] == ["noop"] * 10


async def test_a_per_key_limit_holds_per_payload_value_and_jobs_without_the_field_share_one_value(
    conn: asyncpg.Connection,
) -> None:
    await _limit(conn, "sync", 1, "coachId")
    for payload in ('{"coachId": "a"}', '{"coachId": "a"}', '{"coachId": "b"}', "{}", "{}"):
        await conn.execute(_JOBS, "sync", payload, 0, 1)
    jobs = await queue.claim(conn, worker_id="w", task_types=["sync"], limit=10, lease_s=30)
    assert sorted(str(j.payload.get("coachId")) for j in jobs) == ["None", "a", "b"]
    assert await queue.claim(conn, worker_id="w", task_types=["sync"], limit=10, lease_s=30) == []


async def _running_jobs_read(conn: asyncpg.Connection) -> int:
    """Scans of job_queue that could count its running jobs (job_queue_running_idx, or the whole table) so far,
    this connection's statements included."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    n: int = await conn.fetchval(
        "SELECT (SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'job_queue_running_idx')"
        " + (SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'job_queue')")
    return n


async def test_a_claim_whose_walk_meets_no_limited_job_does_not_count_the_running_jobs(
    conn: asyncpg.Connection,
) -> None:
    await _limit(conn, "lim", 1)
    await conn.execute(_JOBS, "noop", "{}", 0, 3000)
    assert len(await queue.claim(conn, worker_id="w", task_types=["lim", "noop"], limit=1000, lease_s=30)) == 1000
    await conn.execute("ANALYZE job_queue")  # the claim's update finds its rows by key, not by a scan
    before = await _running_jobs_read(conn)
    assert len(await queue.claim(conn, worker_id="w", task_types=["lim", "noop"], limit=50, lease_s=30)) == 50
    assert await _running_jobs_read(conn) == before
    await conn.execute(_JOBS, "lim", "{}", 10, 2)  # met first: the claim counts, under the limit's lock
    jobs = await queue.claim(conn, worker_id="w", task_types=["lim", "noop"], limit=10, lease_s=30)
    assert sorted(j.task_type for j in jobs) == ["lim"] + ["noop"] * 9
    assert await _running_jobs_read(conn) > before


async def test_a_slot_the_claim_fills_passes_its_other_jobs_over_and_the_claim_still_takes_all_it_asked(
    conn: asyncpg.Connection,
) -> None:
    await _limit(conn, "sync", 1, "coachId")
    await conn.execute(_JOBS, "sync", '{"coachId": "a"}', 10, 20)  # walked first
    await conn.execute(_JOBS, "sync", '{"coachId": "b"}', 5, 3)
    await conn.execute(_JOBS, "noop", "{}", 0, 30)
    jobs = await queue.claim(conn, worker_id="w", task_types=["sync", "noop"], limit=12, lease_s=30)
    assert [j.payload.get("coachId", j.task_type) for j in jobs] == ["a", "b"] + ["noop"] * 10
    jobs = await queue.claim(conn, worker_id="w", task_types=["sync", "noop"], limit=12, lease_s=30)
    assert [j.task_type for j in jobs] == ["noop"] * 12  # both slots full: counted, then passed over


async def test_a_limited_job_waits_pending_and_is_claimed_once_the_running_one_finishes(
    conn: asyncpg.Connection,
) -> None:
    await _limit(conn, "lim", 1)
    await conn.execute(_JOBS, "lim", "{}", 0, 2)
    [job] = await queue.claim(conn, worker_id="w", task_types=["lim"], limit=10, lease_s=30)
    assert await queue.claim(conn, worker_id="w", task_types=["lim"], limit=10, lease_s=30) == []
    assert await conn.fetchval("SELECT count(*) FROM job_queue WHERE status = 'pending'") == 1
    await queue.finish(conn, "w", [success(job, None, 0.0)])
    assert len(await queue.claim(conn, worker_id="w", task_types=["lim"], limit=10, lease_s=30)) == 1


async def test_finishing_a_limited_job_notifies_its_task_type_and_an_unlimited_one_does_not(
    conn: asyncpg.Connection, database_url: str,
) -> None:
    await _limit(conn, "lim", 1)
    await conn.execute(_JOBS, "lim", "{}", 0, 1)
    await conn.execute(_JOBS, "noop", "{}", 0, 1)
    jobs = await queue.claim(conn, worker_id="w", task_types=["lim", "noop"], limit=10, lease_s=30)
    heard: list[str] = []
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("job_queue", lambda *a: heard.append(a[3]))
        await queue.finish(conn, "w", [success(j, None, 0.0) for j in jobs])
        await listener.execute("SELECT 1")  # a round trip: the notification has arrived by now
        await asyncio.sleep(0.05)
    finally:
        await listener.close()
    assert heard == ["lim"]


async def _nothing(payload: Any, ctx: Any) -> None:
    return None


async def test_published_limits_replace_the_ones_in_force_and_the_unlimited_types_lose_theirs(
    conn: asyncpg.Connection,
) -> None:
    await _limit(conn, "other", 3)
    reg = Registry()
    reg.add(Task("lim", _nothing, EmptyPayload, concurrency_limit=2, concurrency_key="k"))
    reg.add(Task("other", _nothing, EmptyPayload))
    await limits.publish(conn, reg, "w1")
    state = {s.task_type: (s.max_running, s.key_field, s.set_by) for s in await limits.slots(conn)}
    assert state == {"lim": (2, "k", "w1")}
