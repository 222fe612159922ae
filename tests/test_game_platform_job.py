"""The `game_platform_sync` job run by the real daemon against the simulator."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.support.daemon import running_daemon, wait_for
from tests.support.game_platform import Platform, seed_competitors
from worker import queue
from worker.builtin import default_registry
from worker.queue import NewJob


async def _run_job(platform: Platform, database_url: str, conn: asyncpg.Connection, job: NewJob) -> dict[str, Any]:
    settings = platform.settings(database_url)
    enqueued = await queue.enqueue(conn, job)

    async def finished() -> bool:
        row = await queue.get_job(conn, enqueued.id)
        return row["status"] in ("succeeded", "failed")

    async with running_daemon(settings, default_registry(settings)):
        await wait_for(finished, timeout_s=20)
    return await queue.get_job(conn, enqueued.id)


async def test_the_daemon_runs_the_sync_and_stores_its_summary(
    platform: Platform, database_url: str, conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await seed_competitors(pool, 120)
    platform.sim.failing_players = {"p00007"}
    row = await _run_job(platform, database_url, conn, NewJob("game_platform_sync", {"dryRun": False}))
    assert row["status"] == "succeeded"
    result = row["result"]
    assert result | {"duration_ms": 0, "errors": None} == {
        "competitors": 120,
        "fetched": 119,
        "updated": 119,
        "unchanged": 0,
        "skipped_fresh": 0,
        "skipped_written": 0,
        "failed": 1,
        "error_counts": {"unavailable": 1},
        "errors": None,
        "duration_ms": 0,
        "dry_run": False,
        "resumed_since": None,
    }
    assert [e["error"] for e in result["errors"]] == ["unavailable: stats temporarily unavailable"]
    assert await conn.fetchval("SELECT count(*) FROM competitor_game_stats") == 119


async def test_a_rejected_key_fails_the_job_with_a_clear_error(
    platform: Platform, database_url: str, conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await seed_competitors(pool, 10)
    platform.sim.api_key = "rotated-key"
    job = NewJob("game_platform_sync", {}, max_attempts=1)
    row = await _run_job(platform, database_url, conn, job)
    assert row["status"] == "failed"
    assert row["last_error"].startswith("PlatformAuthError: game platform rejected the API key: HTTP 401")
    assert "GAME_PLATFORM_API_KEY" in row["last_error"]
    assert len(platform.sim.requests) == 1


async def test_a_systemic_failure_is_retried_by_the_queue(
    platform: Platform, database_url: str, conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await seed_competitors(pool, 10)
    platform.sim.inject("401")
    row = await _run_job(platform, database_url, conn, NewJob("game_platform_sync", {}, max_attempts=3))
    assert row["status"] == "succeeded"
    runs = await queue.job_runs(conn, row["id"])
    assert [r["outcome"] for r in runs] == ["retry", "succeeded"]
    assert "HTTP 401" in runs[0]["error"]
    assert row["result"]["updated"] == 10


async def test_an_invalid_payload_fails_the_job_without_a_request(
    platform: Platform, database_url: str, conn: asyncpg.Connection
) -> None:
    row = await _run_job(platform, database_url, conn, NewJob("game_platform_sync", {"dryrun": True}))
    assert row["status"] == "failed"
    assert "dryrun: Extra inputs are not permitted" in row["last_error"]
    assert platform.sim.requests == []
