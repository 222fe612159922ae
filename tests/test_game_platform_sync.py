"""The sync service and the job handler: the real simulator over HTTP and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import structlog
from pydantic import SecretStr

from tests.support.game_platform import Platform, seed_competitors
from worker.errors import InvalidPayload
from worker.game_platform.errors import PlatformAuthError, SyncFailed
from worker.game_platform.simulator import player_id
from worker.game_platform.sync import SyncCounters, sync_all_competitor_game_stats
from worker.game_platform.task import game_platform_sync, game_platform_sync_task
from worker.queue import Job
from worker.tasks import TaskContext

STATS = (
    "SELECT competitor_id, games_played, wins, losses, draws, rating, platform_updated_at, updated_at, fetched_at"
    " FROM competitor_game_stats"
)


async def _sync(platform: Platform, pool: asyncpg.Pool, **kwargs: Any) -> dict[str, Any]:
    client_overrides = kwargs.pop("client", {})
    async with platform.client(**client_overrides) as client:
        return await sync_all_competitor_game_stats(pool, client, **kwargs)


async def _stats(pool: asyncpg.Pool) -> dict[uuid.UUID, asyncpg.Record]:
    return {r["competitor_id"]: r for r in await pool.fetch(STATS)}


async def test_sync_writes_each_competitors_platform_figures(platform: Platform, pool: asyncpg.Pool) -> None:
    ids = await seed_competitors(pool, 5)
    summary = await _sync(platform, pool)
    assert summary | {"duration_ms": 0} == {
        "competitors": 5,
        "fetched": 5,
        "updated": 5,
        "unchanged": 0,
        "skipped_fresh": 0,
        "skipped_written": 0,
        "failed": 0,
        "error_counts": {},
        "errors": [],
        "duration_ms": 0,
        "dry_run": False,
        "resumed_since": None,
    }
    stats = await _stats(pool)
    assert set(stats) == set(ids)
    players = {r["id"]: r["platform_player_id"] for r in await pool.fetch("SELECT * FROM competitors")}
    for cid, row in stats.items():
        expected = platform.sim.stats(players[cid])
        assert (row["games_played"], row["wins"], row["losses"], row["draws"], row["rating"]) == (
            expected["games_played"],
            expected["wins"],
            expected["losses"],
            expected["draws"],
            expected["rating"],
        )
        assert row["platform_updated_at"].isoformat().replace("+00:00", "Z") == expected["updated_at"]


async def test_dry_run_reports_what_would_change_and_writes_nothing(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 8)
    summary = await _sync(platform, pool, dry_run=True)
    assert (summary["fetched"], summary["updated"], summary["unchanged"], summary["dry_run"]) == (8, 8, 0, True)
    assert await pool.fetchval("SELECT count(*) FROM competitor_game_stats") == 0

    await _sync(platform, pool)
    before = await _stats(pool)
    platform.sim.bump(player_id(3))
    summary = await _sync(platform, pool, dry_run=True)
    assert (summary["updated"], summary["unchanged"]) == (1, 7)
    assert await _stats(pool) == before


async def test_coach_filter_syncs_only_that_coachs_competitors(platform: Platform, pool: asyncpg.Pool) -> None:
    coach_a, coach_b = uuid.uuid4(), uuid.uuid4()
    ids_a = await seed_competitors(pool, 3, coach_id=coach_a)
    await seed_competitors(pool, 4, coach_id=coach_b, start=100)
    summary = await _sync(platform, pool, coach_id=str(coach_a))
    assert (summary["competitors"], summary["fetched"], summary["updated"]) == (3, 3, 3)
    assert set(await _stats(pool)) == set(ids_a)
    requested = sum(r.players for r in platform.sim.requests_to("/v1/stats/batch"))
    assert requested == 3


async def test_staleness_filter_skips_recently_fetched_competitors(platform: Platform, pool: asyncpg.Pool) -> None:
    ids = await seed_competitors(pool, 6)
    await _sync(platform, pool)
    platform.sim.requests.clear()

    summary = await _sync(platform, pool, stale_after=timedelta(minutes=30))
    assert (summary["competitors"], summary["skipped_fresh"], summary["fetched"]) == (6, 6, 0)
    assert platform.batch_requests() == 0

    await pool.execute(
        "UPDATE competitor_game_stats SET fetched_at = now() - interval '2 hours' WHERE competitor_id = ANY($1)",
        ids[:2],
    )
    summary = await _sync(platform, pool, stale_after=timedelta(minutes=30))
    assert (summary["skipped_fresh"], summary["fetched"], summary["unchanged"]) == (4, 2, 2)
    fresh = await pool.fetchval(
        "SELECT count(*) FROM competitor_game_stats WHERE fetched_at > now() - interval '1 minute'"
    )
    assert fresh == 6


async def test_a_rerun_with_unchanged_data_changes_nothing(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 10)
    await _sync(platform, pool)
    before = await _stats(pool)
    summary = await _sync(platform, pool)
    assert (summary["fetched"], summary["updated"], summary["unchanged"]) == (10, 0, 10)
    after = await _stats(pool)
    for cid, row in before.items():
        # Every figure and updated_at stay; only fetched_at (when we last checked) advances.
        assert dict(after[cid]) | {"fetched_at": None} == dict(row) | {"fetched_at": None}
        assert after[cid]["fetched_at"] >= row["fetched_at"]


async def test_a_changed_player_is_updated_and_the_rest_unchanged(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 10)
    await _sync(platform, pool)
    platform.sim.bump(player_id(4), player_id(7))
    summary = await _sync(platform, pool)
    assert (summary["updated"], summary["unchanged"]) == (2, 8)


async def test_5xx_is_retried_and_the_sync_completes_without_errors(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 250)
    platform.sim.inject("503", "500")
    summary = await _sync(platform, pool, batch_size=100)
    assert (summary["fetched"], summary["failed"]) == (250, 0)
    assert sorted(r.status for r in platform.sim.requests_to("/v1/stats/batch")) == [200, 200, 200, 500, 503]


async def test_partial_failures_end_in_errors_and_the_job_succeeds(platform: Platform, pool: asyncpg.Pool) -> None:
    ids = await seed_competitors(pool, 20)
    ghost = (
        await pool.fetch(
            "INSERT INTO competitors (coach_id, name, platform_player_id) VALUES ($1, 'Ghost', 'p99999') RETURNING id",
            uuid.uuid4(),
        )
    )[0]["id"]
    platform.sim.failing_players = {player_id(2), player_id(11)}
    summary = await _handler(platform, pool, {"dryRun": False})
    assert (summary["competitors"], summary["fetched"], summary["updated"], summary["failed"]) == (21, 18, 18, 3)
    errors = {e["competitor_id"]: e["error"] for e in summary["errors"]}
    assert errors == {
        str(ids[2]): "unavailable: stats temporarily unavailable",
        str(ids[11]): "unavailable: stats temporarily unavailable",
        str(ghost): "not_found: no player p99999",
    }
    assert await pool.fetchval("SELECT count(*) FROM competitor_game_stats") == 18


async def test_a_batch_that_keeps_failing_fails_only_its_competitors(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 30)
    platform.sim.inject("garbage")
    summary = await _sync(platform, pool, batch_size=10, concurrency=1, client={"max_retries": 0})
    assert (summary["fetched"], summary["failed"]) == (20, 10)
    assert {e["error"].split(":")[0] for e in summary["errors"]} == {"MalformedResponse"}
    assert all("body is not JSON" in e["error"] for e in summary["errors"])


async def test_a_garbage_body_is_retried_and_then_the_batch_succeeds(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 30)
    platform.sim.inject("garbage", "truncated")
    summary = await _sync(platform, pool, batch_size=10, client={"max_retries": 2})
    assert (summary["fetched"], summary["failed"]) == (30, 0)


async def test_every_competitor_failing_fails_the_sync(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 5)
    platform.sim.error_rate = 1.0
    with pytest.raises(SyncFailed, match=r"every competitor failed \(5 of 5\).*HTTP 503") as info:
        await _sync(platform, pool, client={"max_retries": 1})
    assert info.value.summary["failed"] == 5


async def test_a_rejected_key_stops_the_sync_without_further_requests(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 300)
    with pytest.raises(PlatformAuthError, match="HTTP 401"):
        await _sync(platform, pool, batch_size=100, concurrency=1, client={"api_key": SecretStr("nope")})
    assert [r.status for r in platform.sim.requests] == [401]
    assert await pool.fetchval("SELECT count(*) FROM competitor_game_stats") == 0


async def test_a_thousand_competitors_complete_in_few_statements(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 1000)
    counters = SyncCounters()
    with structlog.testing.capture_logs() as logs:
        summary = await _sync(platform, pool, batch_size=100, concurrency=4, counters=counters)
    assert (summary["competitors"], summary["fetched"], summary["updated"], summary["failed"]) == (1000, 1000, 1000, 0)
    assert await pool.fetchval("SELECT count(*) FROM competitor_game_stats") == 1000
    assert counters.batches == 10 and counters.http_requests == 10
    assert 2 <= counters.db_round_trips - counters.pages <= 11  # one count, then at most one upsert per batch
    progress = [(e["done"], e["total"]) for e in logs if e["event"] == "game_platform_sync.progress"]
    assert progress[-1] == (1000, 1000)
    assert all(done % 100 == 0 and total == 1000 for done, total in progress)  # logged as batches are written
    assert [done for done, _ in progress] == sorted({done for done, _ in progress})


async def test_answers_that_arrive_during_a_write_go_out_together_in_one_statement(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    await seed_competitors(pool, 1000)
    counters = SyncCounters()
    async with pool.acquire() as locker, locker.transaction():
        # Writes wait on this lock until every answer is in; reads (the competitor list) do not.
        await locker.execute("LOCK TABLE competitor_game_stats IN EXCLUSIVE MODE")
        sync = asyncio.create_task(_sync(platform, pool, batch_size=100, concurrency=10, counters=counters))
        while len([r for r in platform.sim.requests_to("/v1/stats/batch") if r.status]) < 10:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the last answers are matched and queued
        waiting = await locker.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        assert waiting == 1  # one writer: one statement in flight, whatever the concurrency
    summary = await sync
    assert (summary["fetched"], summary["updated"], summary["failed"]) == (1000, 1000, 0)
    assert await pool.fetchval("SELECT count(*) FROM competitor_game_stats") == 1000
    # The reads (one count, then the listing's pages), the write that waited, one write for everything queued.
    assert counters.db_round_trips - 1 - counters.pages <= 2


async def test_a_failed_write_stops_the_sync_at_once_and_raises(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 1000)
    await pool.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'stats refused'; END $$;"
        " CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON competitor_game_stats"
        " FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    platform.sim.latency_s = 0.2  # the first write fails long before the second answer is in
    with pytest.raises(asyncpg.RaiseError, match="stats refused"):
        await _sync(platform, pool, batch_size=100, concurrency=1)
    assert len(platform.sim.requests_to("/v1/stats/batch")) <= 2  # the request in flight, no more
    assert await pool.fetchval("SELECT count(*) FROM competitor_game_stats") == 0


async def test_at_most_concurrency_batch_requests_are_in_flight(platform: Platform, pool: asyncpg.Pool) -> None:
    await seed_competitors(pool, 90)
    platform.sim.latency_s = 0.1
    summary = await _sync(platform, pool, batch_size=10, concurrency=3)
    assert (summary["fetched"], summary["failed"]) == (90, 0)
    arrivals = sorted(r.at for r in platform.sim.requests_to("/v1/stats/batch"))
    assert len(arrivals) == 9
    # A fourth request can only leave once one of the three before it was answered (0.1 s after its arrival).
    assert all(later - earlier >= 0.095 for earlier, later in zip(arrivals, arrivals[3:], strict=False))
    assert arrivals[2] - arrivals[0] < 0.09  # the three slots are used at once
    assert arrivals[-1] - arrivals[0] < 0.6  # three waves of three, not nine requests one after another


async def test_no_competitors_is_an_empty_success(platform: Platform, pool: asyncpg.Pool) -> None:
    summary = await _sync(platform, pool)
    assert (summary["competitors"], summary["failed"], summary["errors"]) == (0, 0, [])


# --- the job's payload and handler ---------------------------------------------------------------------


async def _handler(platform: Platform, pool: asyncpg.Pool, payload: dict[str, Any]) -> dict[str, Any]:
    task = game_platform_sync_task()
    database_url = "postgresql://unused@127.0.0.1/unused"
    now = datetime.now(UTC)
    job = Job(uuid.uuid4(), "game_platform_sync", payload, 1, 5, 0, now)
    ctx = TaskContext(job=job, worker_id="t", resources={"pool": pool, "settings": platform.settings(database_url)})
    return await game_platform_sync(task.parse(payload), ctx)


COACH = "6f1c7b0e-4a55-4a52-9a5c-3c1f0f6c2b11"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({}, (False, None, None)),
        ({"dryRun": True, "coachId": None, "staleAfterMinutes": None}, (True, None, None)),
        ({"dry_run": True, "coach_id": COACH, "stale_after_minutes": 60}, (True, COACH, 60)),
        ({"dryRun": False, "coachId": COACH, "staleAfterMinutes": 5}, (False, COACH, 5)),
    ],
)
def test_payload_accepts_camel_and_snake_case(payload: dict[str, Any], expected: tuple[Any, ...]) -> None:
    parsed = game_platform_sync_task().parse(payload)
    coach = None if parsed.coach_id is None else str(parsed.coach_id)
    assert (parsed.dry_run, coach, parsed.stale_after_minutes) == expected


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"dryrun": True}, "dryrun: Extra inputs are not permitted"),
        ({"dryRun": "yes"}, "dryRun: Input should be a valid boolean"),
        ({"coachId": "coach-7"}, "coachId: Input should be a valid UUID"),
        ({"staleAfterMinutes": 0}, "staleAfterMinutes: Input should be greater than or equal to 1"),
        ({"staleAfterMinutes": "60"}, "staleAfterMinutes: Input should be a valid integer"),
    ],
)
def test_payload_rejects_unknown_keys_and_bad_values(payload: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidPayload, match=problem):
        game_platform_sync_task().parse(payload)


async def test_handler_honours_coach_and_dry_run(platform: Platform, pool: asyncpg.Pool) -> None:
    coach = uuid.uuid4()
    await seed_competitors(pool, 2, coach_id=coach)
    await seed_competitors(pool, 3, start=10)
    summary = await _handler(platform, pool, {"dryRun": True, "coachId": str(coach)})
    assert (summary["competitors"], summary["updated"], summary["dry_run"]) == (2, 2, True)
    assert await pool.fetchval("SELECT count(*) FROM competitor_game_stats") == 0
