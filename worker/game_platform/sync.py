"""The sync service: every competitor's game statistics, from the game platform into `competitor_game_stats`.

One query lists the competitors (coach and staleness filters applied in SQL); they are cut into batches of the
platform's batch endpoint; at most `concurrency` batch requests are in flight (one fetcher task per slot, which
sends the next batch as soon as its previous answer is in); the answers are written by one writer task, ONE upsert
statement (parallel arrays through unnest) per write, so writes overlap the next fetches: while one write is in
flight the answers that arrive meanwhile are matched and queued, and the next write takes all of them (up to
WRITE_MAX_ROWS) in one statement. So a run holds one pool connection at a time and sends fewer statements than
batches when answers arrive together (a task per batch had up to `concurrency` upserts in flight, each on a
connection of the daemon's pool, competing for the database's CPU). A failed batch or player is recorded in
`errors` and the others carry on. 401/403 (or a database failure) stops everything at once and raises; so does a
run in which every competitor failed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import anyio
import asyncpg
import structlog

from worker import db
from worker.game_platform.client import GamePlatformClient
from worker.game_platform.contract import MAX_BATCH, BatchResponse, PlayerStats
from worker.game_platform.errors import GamePlatformError, PlatformAuthError, SyncFailed
from worker.sql import queries

__all__ = ["SyncCounters", "sync_all_competitor_game_stats"]

log = structlog.get_logger("worker.game_platform.sync")
_Q = queries("game_platform")
PROGRESS_STEPS = 10
"""Progress is logged each time another tenth of the competitors is done."""
WRITE_MAX_ROWS = 1000
"""Most stats rows one upsert statement carries."""


@dataclass
class SyncCounters:
    """What a run cost, for benchmarks and tests: statements sent to PostgreSQL, HTTP requests, batches."""

    db_round_trips: int = 0
    http_requests: int = 0
    batches: int = 0


@dataclass
class _Run:
    pool: asyncpg.Pool
    client: GamePlatformClient
    dry_run: bool
    total: int
    counters: SyncCounters
    fetched: int = 0
    updated: int = 0
    unchanged: int = 0
    done: int = 0
    last_step: int = 0
    errors: list[dict[str, str]] | None = None
    fatal: BaseException | None = None
    queued: list[tuple[UUID, PlayerStats]] = field(default_factory=list)
    """Matched rows waiting for the writer."""
    queued_done: int = 0
    """Competitors whose batch is matched and waits for the writer (progress counts them once written)."""
    wake_writer: anyio.Event = field(default_factory=anyio.Event)
    fetching: bool = True

    def fail(self, competitor_id: UUID, error: str) -> None:
        assert self.errors is not None
        self.errors.append({"competitor_id": str(competitor_id), "error": error})

    async def write(self, rows: list[tuple[UUID, PlayerStats]]) -> None:
        args = (
            [cid for cid, _ in rows],
            [s.games_played for _, s in rows],
            [s.wins for _, s in rows],
            [s.losses for _, s in rows],
            [s.draws for _, s in rows],
            [s.rating for _, s in rows],
            [s.updated_at for _, s in rows],
        )
        query = _Q["preview_stats"] if self.dry_run else _Q["upsert_stats"]
        self.counters.db_round_trips += 1
        with db.translate():
            row = await self.pool.fetchrow(query, *args)
        assert row is not None
        self.updated += row["updated"]
        self.unchanged += row["unchanged"]

    def progress(self, count: int) -> None:
        self.done += count
        step = self.done * PROGRESS_STEPS // max(1, self.total)
        if step > self.last_step:
            self.last_step = step
            log.info("game_platform_sync.progress", done=self.done, total=self.total)


Batch = list[tuple[UUID, str]]
"""(competitor id, platform player id) pairs fetched by one request."""


async def _fetch(run: _Run, batch: Batch) -> tuple[Batch, dict[str, UUID], BatchResponse] | None:
    """One batch request; None when it failed (its competitors are recorded in `errors`)."""
    by_player = {player: cid for cid, player in batch}
    try:
        answer = await run.client.fetch_stats_batch(list(by_player))
    except GamePlatformError as exc:
        if isinstance(exc, PlatformAuthError):
            raise
        for cid, _ in batch:
            run.fail(cid, f"{type(exc).__name__}: {exc}")
        run.progress(len(batch))
        return None
    return batch, by_player, answer


def _match(run: _Run, batch: Batch, by_player: dict[str, UUID], answer: BatchResponse) -> None:
    """Match one answer to the batch's competitors and queue what it holds for the writer."""
    found: dict[str, PlayerStats] = {}
    for stats in answer.data:
        if stats.player_id in by_player:
            found[stats.player_id] = stats  # one row per competitor, even if the platform repeats one
    reported = set(found)
    for err in answer.errors:
        if err.player_id in by_player and err.player_id not in reported:
            reported.add(err.player_id)
            run.fail(by_player[err.player_id], f"{err.code}: {err.message}" if err.message else err.code)
    for player, cid in by_player.items():
        if player not in reported:
            run.fail(cid, "missing from the platform's answer")
    run.fetched += len(found)
    run.queued.extend((by_player[p], s) for p, s in found.items())
    run.queued_done += len(batch)
    run.wake_writer.set()


async def _writer(run: _Run) -> None:
    """The one writer: writes what is queued, in statements of up to WRITE_MAX_ROWS rows, until the fetchers
    are done and nothing is left."""
    while True:
        await run.wake_writer.wait()
        run.wake_writer = anyio.Event()
        while run.queued or run.queued_done:
            rows, run.queued = run.queued[:WRITE_MAX_ROWS], run.queued[WRITE_MAX_ROWS:]
            done = run.queued_done if not run.queued else 0
            run.queued_done -= done
            if rows:
                await run.write(rows)
            run.progress(done)
        if not run.fetching:
            return


async def _fetcher(run: _Run, batches: Iterator[Batch]) -> None:
    """One request slot: fetches batch after batch until none is left. Each answer is matched and queued for
    the writer, and the slot's next request goes out at once."""
    for batch in batches:
        got = await _fetch(run, batch)
        if got is not None:
            _match(run, *got)


async def _guarded(
    run: _Run, step: Callable[..., Awaitable[None]], args: tuple[Any, ...], scope: anyio.CancelScope
) -> None:
    """Run one fetcher or the writer; a fatal error is kept and cancels the others (no ExceptionGroup to unwrap)."""
    try:
        await step(run, *args)
    except Exception as exc:
        if run.fatal is None:
            run.fatal = exc
        scope.cancel()


async def sync_all_competitor_game_stats(
    pool: asyncpg.Pool,
    client: GamePlatformClient,
    *,
    coach_id: UUID | str | None = None,
    dry_run: bool = False,
    stale_after: timedelta | None = None,
    batch_size: int = MAX_BATCH,
    concurrency: int = 8,
    counters: SyncCounters | None = None,
) -> dict[str, Any]:
    """Sync every (or one coach's) competitor; returns the summary stored as the job's result.

    Summary: {competitors, fetched, updated, unchanged, skipped_fresh, failed, errors: [{competitor_id,
    error}], duration_ms, dry_run}. In a dry run `updated`/`unchanged` say what a real run would do.
    Raises PlatformAuthError (401/403), DatabaseUnavailable, or SyncFailed when every competitor failed.
    """
    started = time.monotonic()
    counters = counters if counters is not None else SyncCounters()
    coach = UUID(str(coach_id)) if coach_id is not None else None
    stale_s = stale_after.total_seconds() if stale_after is not None else None
    counters.db_round_trips += 1
    with db.translate():
        rows = await pool.fetch(_Q["select_competitors"], coach, stale_s)
    todo = [(r["id"], r["platform_player_id"]) for r in rows if not r["fresh"]]
    size = max(1, min(batch_size, MAX_BATCH))
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    counters.batches += len(batches)
    run = _Run(pool, client, dry_run, len(todo), counters, errors=[])
    log.info(
        "game_platform_sync.started",
        competitors=len(rows),
        to_fetch=len(todo),
        batches=len(batches),
        dry_run=dry_run,
        coach_id=str(coach) if coach else None,
    )
    requests_before = client.requests_sent
    pending = iter(batches)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_guarded, run, _writer, (), tg.cancel_scope)
        async with anyio.create_task_group() as fetchers:
            for _ in range(min(max(1, concurrency), len(batches))):
                fetchers.start_soon(_guarded, run, _fetcher, (pending,), tg.cancel_scope)
        run.fetching = False
        run.wake_writer.set()
    counters.http_requests += client.requests_sent - requests_before
    if run.fatal is not None:
        raise run.fatal
    errors = run.errors or []
    summary: dict[str, Any] = {
        "competitors": len(rows),
        "fetched": run.fetched,
        "updated": run.updated,
        "unchanged": run.unchanged,
        "skipped_fresh": len(rows) - len(todo),
        "failed": len(errors),
        "errors": errors,
        "duration_ms": math.ceil((time.monotonic() - started) * 1000),
        "dry_run": dry_run,
    }
    log.info("game_platform_sync.finished", **{k: v for k, v in summary.items() if k != "errors"})
    if todo and len(errors) == len(todo):
        raise SyncFailed(
            f"every competitor failed ({len(errors)} of {len(todo)}); first error: {errors[0]['error']}", summary
        )
    return summary
