"""The sync service: every competitor's game statistics, from the game platform into `competitor_game_stats`.

The competitors are read in pages (keyset by id, `page_size` rows a statement; coach, staleness and resume
filters applied in SQL) by one pager task, which cuts each page into batches of the platform's batch endpoint
and hands them to the fetchers through a bounded channel; at most `concurrency` batch requests are in flight
(one fetcher task per slot, which sends the next batch as soon as its previous answer is in); the answers are
written by one writer task, ONE upsert statement (parallel arrays through unnest) per write, so writes overlap
the next fetches: answers that arrive during a write go out together in the next one (up to WRITE_MAX_ROWS).

Memory stays bounded whatever the number of competitors (tests/test_game_platform_scale.py): the channel holds
at most 2 x concurrency batches, the writer's queue at most QUEUE_MAX_ROWS rows (fetchers wait above it), and
the result keeps the first MAX_ERRORS errors with a count per error code.

A failed batch or player is recorded in the errors and the others carry on. 401/403 (or a database failure)
stops everything at once and raises; so does a run in which every competitor failed.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import anyio
import asyncpg
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from worker import db
from worker.game_platform.client import GamePlatformClient
from worker.game_platform.contract import MAX_BATCH, BatchResponse, PlayerStats
from worker.game_platform.errors import (
    GamePlatformError,
    MalformedResponse,
    PlatformAuthError,
    PlatformRequestError,
    PlatformUnavailable,
    SyncFailed,
)
from worker.sql import queries

__all__ = ["MAX_ERRORS", "Progress", "SyncCounters", "sync_all_competitor_game_stats"]

log = structlog.get_logger("worker.game_platform.sync")
_Q = queries("game_platform")
PROGRESS_STEPS = 10
"""Progress is logged each time another tenth of the competitors is done."""
WRITE_MAX_ROWS = 1000
"""Most stats rows one upsert statement carries."""
QUEUE_MAX_ROWS = 2 * WRITE_MAX_ROWS
"""Fetchers wait while more matched rows than this wait for the writer."""
PAGE_SIZE = 1000
"""Competitors read per listing statement."""
MAX_ERRORS = 50
"""Per-competitor errors kept in the result; beyond them only the counts per code grow."""

Progress = Callable[[int, int | None, str | None], None]
"""progress(done, total, phase): TaskContext.progress, or any callable of that shape."""


@dataclass
class SyncCounters:
    """What a run cost, for benchmarks and tests: statements sent to PostgreSQL, HTTP requests, batches."""

    db_round_trips: int = 0
    http_requests: int = 0
    batches: int = 0
    pages: int = 0


Batch = list[tuple[UUID, str]]
"""(competitor id, platform player id) pairs fetched by one request."""


@dataclass
class _Run:
    pool: asyncpg.Pool
    client: GamePlatformClient
    dry_run: bool
    total: int
    counters: SyncCounters
    report: Progress | None = None
    fetched: int = 0
    updated: int = 0
    unchanged: int = 0
    done: int = 0
    last_step: int = 0
    failed: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    error_counts: Counter[str] = field(default_factory=Counter)
    fatal: BaseException | None = None
    queued: list[tuple[UUID, PlayerStats]] = field(default_factory=list)
    """Matched rows waiting for the writer."""
    queued_done: int = 0
    """Competitors whose batch is matched and waits for the writer (progress counts them once written)."""
    wake_writer: anyio.Event = field(default_factory=anyio.Event)
    drained: anyio.Event = field(default_factory=anyio.Event)
    fetching: bool = True

    def fail(self, competitor_id: UUID, code: str, error: str) -> None:
        self.failed += 1
        self.error_counts[code] += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"competitor_id": str(competitor_id), "code": code, "error": error})

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
        if count and self.report is not None:
            self.report(self.done, self.total, "fetching")
        step = self.done * PROGRESS_STEPS // max(1, self.total)
        if step > self.last_step:
            self.last_step = step
            log.info("game_platform_sync.progress", done=self.done, total=self.total)


def _code(exc: GamePlatformError) -> str:
    """The error code a failed batch counts under."""
    if isinstance(exc, PlatformUnavailable):
        return exc.code
    if isinstance(exc, MalformedResponse):
        return "malformed"
    if isinstance(exc, PlatformRequestError):
        return exc.code or f"http_{exc.status}"
    return "error"


async def _pager(
    run: _Run, send: MemoryObjectSendStream[Batch], filters: tuple[Any, ...], page_size: int, batch_size: int
) -> None:
    """Reads the competitors to fetch page after page (keyset) and sends them on in batches."""
    after: UUID | None = None
    async with send:
        while True:
            run.counters.db_round_trips += 1
            run.counters.pages += 1
            with db.translate():
                rows = await run.pool.fetch(_Q["competitors_page"], *filters, after, page_size)
            if not rows:
                return
            after = rows[-1]["id"]
            for i in range(0, len(rows), batch_size):
                run.counters.batches += 1
                await send.send([(r["id"], r["platform_player_id"]) for r in rows[i : i + batch_size]])
            if len(rows) < page_size:
                return


async def _fetch(run: _Run, batch: Batch) -> tuple[dict[str, UUID], BatchResponse] | None:
    """One batch request; None when it failed (its competitors are recorded in the errors)."""
    by_player = {player: cid for cid, player in batch}
    try:
        answer = await run.client.fetch_stats_batch(list(by_player))
    except GamePlatformError as exc:
        if isinstance(exc, PlatformAuthError):
            raise
        code, text = _code(exc), f"{type(exc).__name__}: {exc}"
        for cid, _ in batch:
            run.fail(cid, code, text)
        run.progress(len(batch))
        return None
    return by_player, answer


def _match(run: _Run, by_player: dict[str, UUID], answer: BatchResponse) -> None:
    """Match one answer to the batch's competitors and queue what it holds for the writer."""
    found: dict[str, PlayerStats] = {}
    for stats in answer.data:
        if stats.player_id in by_player:
            found[stats.player_id] = stats  # one row per competitor, even if the platform repeats one
    reported = set(found)
    for err in answer.errors:
        if err.player_id in by_player and err.player_id not in reported:
            reported.add(err.player_id)
            run.fail(by_player[err.player_id], err.code, f"{err.code}: {err.message}" if err.message else err.code)
    for player, cid in by_player.items():
        if player not in reported:
            run.fail(cid, "missing", "missing from the platform's answer")
    run.fetched += len(found)
    run.queued.extend((by_player[p], s) for p, s in found.items())
    run.queued_done += len(by_player)
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
            if len(run.queued) <= QUEUE_MAX_ROWS:
                run.drained.set()
        if not run.fetching:
            return


async def _fetcher(run: _Run, batches: MemoryObjectReceiveStream[Batch]) -> None:
    """One request slot: fetches batch after batch until none is left. Each answer is matched and queued for
    the writer, and the slot's next request goes out at once (or once the writer caught up, above
    QUEUE_MAX_ROWS)."""
    async with batches:
        async for batch in batches:
            got = await _fetch(run, batch)
            if got is not None:
                _match(run, *got)
            while len(run.queued) > QUEUE_MAX_ROWS:
                if run.drained.is_set():  # every waiting fetcher waits on the same event
                    run.drained = anyio.Event()
                await run.drained.wait()


async def _guarded(run: _Run, scope: anyio.CancelScope, step: Callable[..., Any], *args: Any) -> None:
    """Run the pager, a fetcher or the writer; a fatal error is kept and cancels the others (no
    ExceptionGroup to unwrap)."""
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
    resume_since: datetime | None = None,
    batch_size: int = MAX_BATCH,
    concurrency: int = 8,
    page_size: int = PAGE_SIZE,
    counters: SyncCounters | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Sync every (or one coach's) competitor; returns the summary stored as the job's result.

    `resume_since`: skip competitors fetched since then (the resume of a retried job: what its earlier
    attempts wrote). Summary: {competitors, fetched, updated, unchanged, skipped_fresh, skipped_written,
    failed, error_counts: {code: n}, errors: [first MAX_ERRORS {competitor_id, code, error}], duration_ms,
    dry_run, resumed_since}. In a dry run `updated`/`unchanged` say what a real run would do.
    Raises PlatformAuthError (401/403), DatabaseUnavailable, or SyncFailed when every competitor failed.
    """
    started = time.monotonic()
    counters = counters if counters is not None else SyncCounters()
    coach = UUID(str(coach_id)) if coach_id is not None else None
    stale_s = stale_after.total_seconds() if stale_after is not None else None
    filters = (coach, stale_s, resume_since)
    if progress is not None:
        progress(0, None, "listing")
    counters.db_round_trips += 1
    with db.translate():
        counts = await pool.fetchrow(_Q["count_competitors"], *filters)
    assert counts is not None
    to_fetch = counts["competitors"] - counts["fresh"] - counts["written"]
    run = _Run(pool, client, dry_run, to_fetch, counters, progress)
    log.info(
        "game_platform_sync.started",
        competitors=counts["competitors"],
        to_fetch=to_fetch,
        skipped_written=counts["written"],
        dry_run=dry_run,
        coach_id=str(coach) if coach else None,
        resumed_since=resume_since.isoformat() if resume_since else None,
    )
    if progress is not None:
        progress(0, to_fetch, "fetching")
    requests_before = client.requests_sent
    size = max(1, min(batch_size, MAX_BATCH))
    send, receive = anyio.create_memory_object_stream[Batch](max(1, 2 * concurrency))
    async with anyio.create_task_group() as tg:
        scope = tg.cancel_scope
        tg.start_soon(_guarded, run, scope, _writer)
        async with anyio.create_task_group() as fetchers, receive:
            fetchers.start_soon(_guarded, run, scope, _pager, send, filters, max(1, page_size), size)
            for _ in range(max(1, concurrency)):
                fetchers.start_soon(_guarded, run, scope, _fetcher, receive.clone())
        run.fetching = False
        run.wake_writer.set()
    counters.http_requests += client.requests_sent - requests_before
    if run.fatal is not None:
        raise run.fatal
    summary: dict[str, Any] = {
        "competitors": counts["competitors"],
        "fetched": run.fetched,
        "updated": run.updated,
        "unchanged": run.unchanged,
        "skipped_fresh": counts["fresh"],
        "skipped_written": counts["written"],
        "failed": run.failed,
        "error_counts": dict(sorted(run.error_counts.items())),
        "errors": run.errors,
        "duration_ms": math.ceil((time.monotonic() - started) * 1000),
        "dry_run": dry_run,
        "resumed_since": resume_since.isoformat() if resume_since else None,
    }
    log.info("game_platform_sync.finished", **{k: v for k, v in summary.items() if k != "errors"})
    if progress is not None:
        progress(run.done, to_fetch, "done")
    if run.done and run.failed == run.done:
        raise SyncFailed(
            f"every competitor failed ({run.failed} of {run.done}); first error: {run.errors[0]['error']}", summary
        )
    return summary
