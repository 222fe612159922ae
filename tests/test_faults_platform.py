"""The game platform misbehaving under a running daemon (the simulator of tests/support/game_platform.py): 5xx
bursts, 429 storms, timeouts, truncated and garbage bodies, slow bodies. The sync retries as specified (each
transient fault costs exactly one more request), records per-competitor errors when a batch never recovers,
fails the attempt (and the queue retries it) only when everything failed, and the daemon stays healthy."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from tests.support.daemon import wait_for
from tests.support.game_platform import API_KEY, Platform, seed_competitors
from tests.support.http import http_daemon
from worker import queue
from worker.game_platform.sync import MAX_ERRORS
from worker.runtime.daemon import Daemon

COMPETITORS = 250  # three batches of 100


def _overrides(platform: Platform, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "game_platform_base_url": platform.url,
        "game_platform_api_key": API_KEY,
        "game_platform_rps": 1000.0,
        "game_platform_concurrency": 2,
        "game_platform_batch_size": 100,
        "game_platform_read_timeout_s": 0.5,
        "game_platform_total_timeout_s": 5.0,
        "game_platform_max_retries": 5,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.1,
    }
    values.update(extra)
    return platform.use(values)  # the game platform's settings are the task's own, read from the environment


async def _run_sync(daemon: Daemon, conn: asyncpg.Connection, max_attempts: int = 1) -> dict[str, Any]:
    job = await queue.enqueue(conn, queue.NewJob("game_platform_sync", {}, max_attempts=max_attempts))
    daemon.wake()

    async def finished() -> bool:
        return (await queue.get_job(conn, job.id))["status"] in ("succeeded", "failed")

    await wait_for(finished, timeout_s=30, interval_s=0.05)
    return await queue.get_job(conn, job.id)


async def _healthy(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text


@pytest.mark.slow
async def test_transient_platform_faults_are_each_retried_once_and_the_sync_completes(
    platform: Platform, database_url: str, conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await seed_competitors(pool, COMPETITORS)
    faults = ["502", "503", "429", "timeout", "garbage", "truncated", "500"]
    platform.sim.hang_s = 2.0
    platform.sim.latency_s = 0.05  # slow bodies throughout
    async with http_daemon(database_url, **_overrides(platform)) as (daemon, client):
        platform.sim.inject(*faults)
        with capture_logs() as logs:
            row = await _run_sync(daemon, conn)
        await _healthy(client)
    assert row["status"] == "succeeded", row["last_error"]
    result = row["result"]
    assert (result["updated"], result["failed"], result["errors"]) == (COMPETITORS, 0, [])
    # Each fault cost exactly one retry: 3 batches + one more request per fault, and nothing else.
    assert platform.batch_requests() == 3 + len(faults)
    retries = [e for e in logs if e["event"] == "game_platform.retry"]
    assert len(retries) == len(faults)
    reasons = " | ".join(str(e.get("reason")) for e in retries)
    for expected in ("HTTP 502", "HTTP 503", "HTTP 429", "timed out", "HTTP 500"):
        assert expected in reasons, reasons
    assert await conn.fetchval("SELECT count(*) FROM competitor_game_stats") == COMPETITORS


@pytest.mark.slow
async def test_a_batch_that_never_recovers_is_recorded_per_competitor_and_the_rest_is_synced(
    platform: Platform, database_url: str, conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await seed_competitors(pool, COMPETITORS)
    failing = {"p00003", "p00204"}
    platform.sim.failing_players = failing
    async with http_daemon(
        database_url, **_overrides(platform, game_platform_concurrency=1, game_platform_max_retries=2)
    ) as (daemon, client):
        platform.sim.inject("503", "503", "503")  # the first batch: three attempts, all 503
        row = await _run_sync(daemon, conn)
        await _healthy(client)
    assert row["status"] == "succeeded", row["last_error"]
    result = row["result"]
    player_of = dict(await conn.fetch("SELECT id::text, platform_player_id FROM competitors"))
    first_batch = {r["platform_player_id"] for r in await conn.fetch(
        "SELECT platform_player_id FROM competitors ORDER BY id LIMIT 100")}
    lost = {player_of[e["competitor_id"]] for e in result["errors"] if "HTTP 503" in e["error"]}
    # The whole first batch failed; the result names its competitors up to the cap of MAX_ERRORS and counts all.
    assert len(result["errors"]) == len(lost) == MAX_ERRORS and lost <= first_batch
    assert result["failed"] == 100 + len(failing - first_batch)  # + those the platform reported inside answers
    assert result["error_counts"] == {"unavailable": result["failed"]}
    assert result["updated"] == COMPETITORS - result["failed"]
    assert platform.batch_requests() == 3 + 2
    assert await conn.fetchval("SELECT count(*) FROM competitor_game_stats") == result["updated"]


@pytest.mark.slow
async def test_a_platform_down_for_good_fails_the_attempt_the_queue_retries_and_the_daemon_stays_healthy(
    platform: Platform, database_url: str, conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await seed_competitors(pool, 20)
    platform.sim.error_rate = 1.0  # every request 503
    async with http_daemon(
        database_url, **_overrides(platform, game_platform_max_retries=1)
    ) as (daemon, client):
        row = await _run_sync(daemon, conn, max_attempts=2)
        await _healthy(client)
        # and it still runs other work
        other = await queue.enqueue(conn, queue.NewJob("noop", {}))
        daemon.wake()

        async def done() -> bool:
            return (await queue.get_job(conn, other.id))["status"] == "succeeded"

        await wait_for(done)
    assert row["status"] == "failed"
    assert "every competitor failed" in row["last_error"]
    runs = await queue.job_runs(conn, row["id"])
    assert [r["outcome"] for r in runs] == ["retry", "failed"]
    assert platform.batch_requests() == 2 * 2  # two attempts, each one request and one retry
