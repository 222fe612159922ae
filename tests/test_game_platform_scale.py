"""The sync at scale, with a few thousand competitors and small pages (the 100,000 run is in
bench/bench_sync.py): keyset paging, a capped result, progress, and a retried attempt that resumes."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import asyncpg
import pytest

from tests.support.daemon import wait_for
from tests.support.game_platform import API_KEY, Platform, seed_competitors
from tests.support.procs import WorkerProcess, worker_env
from worker import queue
from worker.backoff import BackoffPolicy
from worker.game_platform.simulator import Simulator, serve_simulator
from worker.game_platform.sync import MAX_ERRORS, SyncCounters, sync_all_competitor_game_stats
from worker.game_platform.task import game_platform_sync_task
from worker.runtime.runner import execute
from worker.tasks import TaskContext

COMPETITORS = 3000
WORKER = "resume-test"
TASK = game_platform_sync_task()
POLICY = BackoffPolicy(base_s=0.01, max_s=0.01)


@pytest.fixture
async def big_platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    sim = Simulator(seed=7, players=COMPETITORS, api_key=API_KEY)
    async with serve_simulator(sim) as url:
        yield Platform(sim, url, monkeypatch)


async def test_the_competitors_are_read_in_keyset_pages(big_platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 2500)
    counters = SyncCounters()
    async with big_platform.client() as client:
        summary = await sync_all_competitor_game_stats(pool, client, page_size=300, counters=counters)
    assert (summary["fetched"], summary["updated"], summary["failed"]) == (2500, 2500, 0)
    assert counters.pages == math.ceil(2500 / 300)  # 8 full pages and the last, short one
    assert counters.batches == big_platform.batch_requests() == 8 * 3 + 1  # batches never span pages
    assert await pool.fetchval("SELECT count(*) FROM competitor_game_stats") == 2500


async def test_half_the_competitors_failing_keeps_the_result_small(big_platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, COMPETITORS)
    big_platform.sim.failing_players = {f"p{i:05d}" for i in range(0, COMPETITORS, 2)}
    async with big_platform.client() as client:
        summary = await sync_all_competitor_game_stats(pool, client, page_size=500)
    assert (summary["fetched"], summary["failed"]) == (1500, 1500)
    assert summary["error_counts"] == {"unavailable": 1500}
    assert len(summary["errors"]) == MAX_ERRORS
    assert summary["errors"][0]["code"] == "unavailable"
    assert len(json.dumps(summary)) < 8 * 1024


async def test_progress_reaches_the_total_and_says_the_phase(big_platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 1200)
    seen: list[tuple[int, int | None, str | None]] = []
    async with big_platform.client() as client:
        await sync_all_competitor_game_stats(
            pool, client, page_size=200, progress=lambda d, t, p: seen.append((d, t, p))
        )
    assert seen[0] == (0, None, "listing") and seen[-1] == (1200, 1200, "done")
    fetching = [d for d, _, p in seen if p == "fetching"]
    assert fetching == sorted(fetching) and len(fetching) > 2


async def _claim(pool: asyncpg.Pool, job_id: uuid.UUID) -> queue.Job:
    """Claim the job now (its backoff skipped), as the next attempt."""
    await queue.retry_now(pool, [job_id])
    jobs = await queue.claim_ids(pool, [job_id], worker_id=WORKER, lease_s=60)
    assert len(jobs) == 1
    return jobs[0]


async def test_a_retried_attempt_fetches_only_what_the_earlier_one_did_not_write(
    big_platform: Platform, database_url: str, pool: asyncpg.Pool
) -> None:
    await seed_competitors(pool, COMPETITORS)
    settings = big_platform.settings(database_url, game_platform_concurrency=2, game_platform_max_retries=0)
    enq = await queue.enqueue(pool, queue.NewJob("game_platform_sync", {}, max_attempts=5))
    resources = {"pool": pool, "settings": settings}

    # Attempt 1: the key is rotated after ten batch requests; the attempt fails part way.
    big_platform.sim.latency_s = 0.02
    job = await _claim(pool, enq.id)

    async def rotate() -> None:
        while big_platform.batch_requests() < 10:
            await anyio.sleep(0.005)
        big_platform.sim.api_key = "rotated"

    async with anyio.create_task_group() as tg:
        tg.start_soon(rotate)
        finished = await execute(TASK, job, TaskContext(job, WORKER, resources), timeout_s=60, policy=POLICY)
    assert finished.outcome == "retry" and "PlatformAuthError" in (finished.error or "")
    assert await queue.finish(pool, WORKER, [finished]) == {enq.id}
    written = await pool.fetchval("SELECT count(*) FROM competitor_game_stats")
    assert 0 < written < COMPETITORS

    # Attempt 2: the key is back; it skips what attempt 1 wrote.
    big_platform.sim.api_key = API_KEY
    before = big_platform.batch_requests()
    job = await _claim(pool, enq.id)
    assert job.attempt == 2
    finished = await execute(TASK, job, TaskContext(job, WORKER, resources), timeout_s=60, policy=POLICY)
    assert finished.outcome == "succeeded", finished.error
    result = finished.result
    assert (result["skipped_written"], result["fetched"]) == (written, COMPETITORS - written)
    assert big_platform.batch_requests() - before == math.ceil((COMPETITORS - written) / 100)
    assert datetime.fromisoformat(result["resumed_since"]) <= job.started_at
    assert await pool.fetchval("SELECT count(*) FROM competitor_game_stats") == COMPETITORS


async def test_a_full_run_payload_refetches_every_competitor_on_retry(
    big_platform: Platform, database_url: str, pool: asyncpg.Pool
) -> None:
    await seed_competitors(pool, 1000)
    resources = {"pool": pool, "settings": big_platform.settings(database_url)}
    enq = await queue.enqueue(pool, queue.NewJob("game_platform_sync", {"fullRun": True}, max_attempts=5))
    for attempt in (1, 2):
        job = await _claim(pool, enq.id)
        assert job.attempt == attempt
        finished = await execute(TASK, job, TaskContext(job, WORKER, resources), timeout_s=60, policy=POLICY)
        assert finished.outcome == "succeeded", finished.error
        # Recorded as a failed attempt, so that the next claim is a retry of the same job.
        retry = dataclasses.replace(finished, status="pending", outcome="retry", result=None, error="again",
                                    retry_at=datetime.now(UTC))
        assert await queue.finish(pool, WORKER, [retry]) == {enq.id}
    assert big_platform.batch_requests() == 20  # both attempts fetched all 1000 competitors


async def test_a_sync_killed_mid_run_is_resumed_by_the_next_attempt(
    big_platform: Platform, database_url: str, pool: asyncpg.Pool
) -> None:
    """kill -9 of a real worker process part way; the next worker's attempt fetches only the rest."""
    await seed_competitors(pool, COMPETITORS)
    big_platform.sim.latency_s = 0.05
    env = worker_env(
        database_url,
        GAME_PLATFORM_BASE_URL=big_platform.url,
        GAME_PLATFORM_API_KEY=API_KEY,
        WORKER_GAME_PLATFORM_RPS="1000",
        WORKER_GAME_PLATFORM_CONCURRENCY="2",
    )
    enq = await queue.enqueue(pool, queue.NewJob("game_platform_sync", {}, max_attempts=3))
    first = WorkerProcess(env, name="sync-a")
    try:
        async def enough_written() -> bool:
            return bool(await pool.fetchval("SELECT count(*) >= 800 FROM competitor_game_stats"))

        await wait_for(enough_written, timeout_s=60)
        first.kill9()
    finally:
        first.cleanup()
    killed_requests = big_platform.batch_requests()
    written = await pool.fetchval("SELECT count(*) FROM competitor_game_stats")
    assert written < COMPETITORS
    second = WorkerProcess(env, name="sync-b")
    try:
        async def done() -> bool:
            return await pool.fetchval("SELECT status FROM job_queue WHERE id = $1", enq.id) == "succeeded"

        await wait_for(done, timeout_s=60)
    finally:
        second.cleanup()
    row = await pool.fetchrow("SELECT attempts, result, progress FROM job_queue WHERE id = $1", enq.id)
    resumed = big_platform.batch_requests() - killed_requests
    assert row["attempts"] == 2
    assert row["result"]["skipped_written"] >= written
    assert resumed == math.ceil(row["result"]["fetched"] / 100) < math.ceil(COMPETITORS / 100)
    assert row["result"]["fetched"] + row["result"]["skipped_written"] == COMPETITORS
    assert await pool.fetchval("SELECT count(*) FROM competitor_game_stats") == COMPETITORS
    print(f"killed attempt: {killed_requests} batch requests; resumed attempt: {resumed} (a full run: 30)")

