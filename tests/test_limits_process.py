"""Limits across real daemon processes (`python -m worker run`) and the real game platform simulator: a type limited
to 2 never has more than 2 attempts overlapping in the ledger with 3 daemons; three daemons syncing at once get no
429 from a platform whose limit is WORKER_GAME_PLATFORM_RPS; a daemon killed with -9 frees its slot within the
lease and leaves the shared bucket unlocked; a limit changed by configuration takes effect on restart; bad limit
values are one-line errors at start-up (exit 2) that change nothing."""

from __future__ import annotations

import sys
import uuid

import anyio
import asyncpg
import pytest

from tests.support.daemon import wait_for
from tests.support.game_platform import API_KEY, Platform, seed_competitors
from tests.support.procs import worker_env, workers

pytestmark = pytest.mark.slow

# The running total of +1 at each start and -1 at each finish, ends before starts at the same instant.
MAX_OVERLAP = """
SELECT coalesce(max(running), 0) FROM (
    SELECT sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS running
    FROM (SELECT r.started_at AS t, 1 AS d FROM job_runs r JOIN job_queue j ON j.id = r.job_id
          WHERE j.task_type = $1
          UNION ALL
          SELECT r.finished_at, -1 FROM job_runs r JOIN job_queue j ON j.id = r.job_id WHERE j.task_type = $1) e
) s"""


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return worker_env(database_url, WORKER_DB_POOL_SIZE="3", **extra)


async def _all_done(conn: asyncpg.Connection, n: int) -> bool:
    done: int = await conn.fetchval("SELECT count(*) FROM job_queue WHERE status = 'succeeded'")
    return done >= n


async def test_three_daemons_never_run_more_than_two_jobs_of_a_type_limited_to_two(
    database_url: str, conn: asyncpg.Connection,
) -> None:
    await conn.execute("INSERT INTO job_queue (task_type, payload) SELECT 'noop', '{\"sleep_s\": 0.05}'::jsonb"
                       " FROM generate_series(1, 50)")
    env = _env(database_url, WORKER_CONCURRENCY="5", WORKER_TASK_NOOP__CONCURRENCY_LIMIT="2")
    with workers(lambda i: env, 3) as procs:
        for p in procs:
            await p.wait_event("daemon.starting")
        await wait_for(lambda: _all_done(conn, 50), timeout_s=60, interval_s=0.1)
    assert await conn.fetchval("SELECT count(*) FROM job_runs WHERE outcome = 'succeeded'") == 50
    assert await conn.fetchval(MAX_OVERLAP, "noop") == 2


async def test_three_daemons_syncing_at_once_get_no_429_from_a_platform_limited_to_their_configured_rate(
    database_url: str, conn: asyncpg.Connection, pool: asyncpg.Pool, platform: Platform,
) -> None:
    rate = 20.0
    platform.sim.rate_limit_rps = rate
    platform.sim.rate_limit_burst = rate
    coaches = [uuid.uuid4() for _ in range(6)]
    for i, coach in enumerate(coaches):
        await seed_competitors(pool, 40, coach_id=coach, start=i * 40)
    for coach in coaches:
        await conn.execute("INSERT INTO job_queue (task_type, payload, max_attempts) VALUES "
                           "('game_platform_sync', jsonb_build_object('coachId', $1::text), 1)", str(coach))
    env = _env(
        database_url, WORKER_CONCURRENCY="2", GAME_PLATFORM_BASE_URL=platform.url, GAME_PLATFORM_API_KEY=API_KEY,
        WORKER_GAME_PLATFORM_RPS=str(rate), WORKER_GAME_PLATFORM_BATCH_SIZE="5",
        WORKER_GAME_PLATFORM_CONCURRENCY="4",
    )
    with workers(lambda i: env, 3) as procs:
        await wait_for(lambda: _all_done(conn, len(coaches)), timeout_s=90, interval_s=0.1)
        overlapped = await conn.fetchval(MAX_OVERLAP, "game_platform_sync")
    statuses = [r.status for r in platform.sim.requests]
    assert statuses.count(200) >= 6 * 40 // 5
    assert statuses.count(429) == 0
    assert overlapped >= 3  # syncs of several daemons ran at once, drawing from the one budget
    assert not any(p.named("game_platform.retry") for p in procs)


async def test_a_daemon_killed_with_minus_9_frees_its_slot_within_the_lease_and_leaves_the_bucket_unlocked(
    database_url: str, conn: asyncpg.Connection, pool: asyncpg.Pool, platform: Platform,
) -> None:
    platform.sim.latency_s = 0.5  # the sync is still drawing tokens when its daemon dies
    await seed_competitors(pool, 200)
    await conn.execute("INSERT INTO job_queue (task_type, payload) VALUES ('game_platform_sync', '{}')")
    env = _env(
        database_url, GAME_PLATFORM_BASE_URL=platform.url, GAME_PLATFORM_API_KEY=API_KEY,
        WORKER_GAME_PLATFORM_RPS="10", WORKER_GAME_PLATFORM_BATCH_SIZE="5", WORKER_GAME_PLATFORM_CONCURRENCY="2",
    )
    with workers(lambda i: env, 1, prefix="doomed") as [doomed]:
        await doomed.wait_event("job.claimed")

        async def drawing() -> bool:
            return len(platform.sim.requests) >= 3

        await wait_for(drawing, timeout_s=20)
        doomed.kill9()
        await doomed.wait_exit()
    platform.sim.latency_s = 0.0
    with workers(lambda i: env, 1, prefix="heir") as [heir]:
        await heir.wait_event("job.claimed", timeout_s=15)  # the lease (2 s) expired and the slot was free
        await conn.execute("SET lock_timeout = '1s'")
        async with conn.transaction():
            locked = await conn.fetch("SELECT bucket FROM job_queue_rate_buckets FOR UPDATE NOWAIT")
            assert len(locked) == 1
        await wait_for(lambda: _all_done(conn, 1), timeout_s=60, interval_s=0.1)
    outcomes = [r["outcome"] for r in await conn.fetch("SELECT outcome FROM job_runs ORDER BY started_at")]
    assert outcomes == ["abandoned", "succeeded"]


async def test_a_limit_changed_by_configuration_takes_effect_when_the_daemon_restarts(
    database_url: str, conn: asyncpg.Connection,
) -> None:
    await conn.execute("INSERT INTO job_queue (task_type, payload) SELECT 'noop', '{\"sleep_s\": 30}'::jsonb"
                       " FROM generate_series(1, 6)")

    async def running(n: int) -> bool:
        return await conn.fetchval("SELECT count(*) FROM job_queue WHERE status = 'running'") == n

    for limit in ("1", "3"):
        env = _env(database_url, WORKER_CONCURRENCY="10", WORKER_TASK_NOOP__CONCURRENCY_LIMIT=limit,
                   WORKER_SHUTDOWN_GRACE_S="0")
        with workers(lambda i, env=env: env, 1, prefix=f"limit{limit}") as [proc]:
            await proc.wait_event("daemon.starting")
            await wait_for(lambda n=int(limit): running(n), timeout_s=15)
            await conn.execute("SELECT pg_notify('job_queue', 'noop')")  # a claim more: it must find no slot
            await anyio.sleep(0.5)
            assert await running(int(limit))
            in_force = await conn.fetchval("SELECT max_running FROM job_queue_limits WHERE task_type = 'noop'")
            assert in_force == int(limit)
            proc.terminate()
            assert await proc.wait_exit() == 0
    env = _env(database_url, WORKER_TASK_NOOP__CONCURRENCY_LIMIT="none", WORKER_SHUTDOWN_GRACE_S="0")
    with workers(lambda i: env, 1, prefix="unlimited") as [proc]:
        await wait_for(lambda: running(6), timeout_s=15)
    assert await conn.fetchval("SELECT count(*) FROM job_queue_limits WHERE task_type = 'noop'") == 0


@pytest.mark.parametrize(("name", "value", "expect"), [
    ("WORKER_TASK_NOOP__CONCURRENCY_LIMIT", "0", "concurrency_limit must be an integer from 1 to 100000"),
    ("WORKER_TASK_NOOP__CONCURRENCY_LIMIT", "two", "Input should be a valid integer"),
    ("WORKER_TASK_NOOP__CONCURRENCY_KEY", "coach-id", "concurrency_key must be a payload field name"),
    ("WORKER_TASK_NOOP__CONCURRENCY_KEY", "coachId", "concurrency_key needs a concurrency_limit"),
    ("WORKER_TASK_NOPE__CONCURRENCY_LIMIT", "2", "no discovered task is named 'nope'"),
])
async def test_a_bad_limit_value_is_a_one_line_error_at_start_up_and_changes_nothing(
    database_url: str, conn: asyncpg.Connection, name: str, value: str, expect: str,
) -> None:
    env = _env(database_url, **{name: value})
    with anyio.fail_after(30):  # a daemon that accepted the value would run until stopped
        done = await anyio.run_process([sys.executable, "-m", "worker", "run"], env=env, check=False)
    stderr, stdout = done.stderr.decode(), done.stdout.decode()
    assert done.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"worker: error: invalid setting: {name}"), stderr
    assert expect in lines[0]
    assert stdout == ""
    assert await conn.fetchval("SELECT count(*) FROM job_queue_limits") == 0  # nothing published
