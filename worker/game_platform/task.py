"""The `game_platform_sync` job: its payload model and its handler.

Payload (the seed's camelCase; snake_case accepted too; unknown keys rejected):
    {"dryRun": bool = false, "coachId": uuid | null, "staleAfterMinutes": int (1..525600) | null,
     "fullRun": bool = false}

A retried job resumes: an attempt after the first skips the competitors fetched since the job's first attempt
started (what the earlier attempts wrote), unless `fullRun` is true or it is a dry run (which writes
nothing). Progress (done / total, phase) is reported through ctx.progress.

The result stored on the job row is the sync's summary. Per-competitor errors do not fail the job; a systemic
failure does, and the queue retries it with backoff (up to the job's max_attempts):
* PlatformAuthError (401/403, or no API key): the sync stops its other requests at once; the attempt fails
  with a message naming GAME_PLATFORM_API_KEY. It is retried like any systemic failure, because a rotated
  key is fixed outside this process (set max_attempts to bound it);
* SyncFailed: every competitor failed (e.g. the platform unreachable after every retry);
* DatabaseUnavailable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from worker import db
from worker.game_platform.settings import GamePlatformSettings
from worker.sql import queries
from worker.tasks import Task, TaskContext

__all__ = ["TASK_TYPE", "GamePlatformSyncPayload", "game_platform_sync", "game_platform_sync_task"]

TASK_TYPE = "game_platform_sync"
_Q = queries("game_platform")


class GamePlatformSyncPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dry_run: StrictBool = Field(
        default=False,
        validation_alias=AliasChoices("dryRun", "dry_run"),
        description="Fetch and report what would change; write nothing to the stats table.",
    )
    coach_id: UUID | None = Field(
        default=None,
        validation_alias=AliasChoices("coachId", "coach_id"),
        description="Only this coach's competitors.",
    )
    stale_after_minutes: StrictInt | None = Field(
        default=None,
        ge=1,
        le=525_600,
        validation_alias=AliasChoices("staleAfterMinutes", "stale_after_minutes"),
        description="Skip competitors fetched less than this many minutes ago.",
    )
    full_run: StrictBool = Field(
        default=False,
        validation_alias=AliasChoices("fullRun", "full_run"),
        description="A retried attempt fetches every competitor again instead of resuming.",
    )


async def game_platform_sync(payload: GamePlatformSyncPayload, ctx: TaskContext) -> dict[str, Any]:
    """Sync every competitor's game stats from the game platform (honours dryRun, coachId, staleAfterMinutes)."""
    settings = ctx.config(GamePlatformSettings)
    stale = timedelta(minutes=payload.stale_after_minutes) if payload.stale_after_minutes else None
    # Imported here: httpx and the sync are loaded when a sync runs, not when the worker starts.
    from worker.game_platform.client import GamePlatformClient
    from worker.game_platform.ratelimit import shared_limiter
    from worker.game_platform.sync import sync_all_competitor_game_stats

    since = None
    if ctx.job.attempt > 1 and not payload.dry_run and not payload.full_run:
        with db.translate():
            since = await ctx.pool.fetchval(_Q["resume_since"], ctx.job.id, ctx.job.started_at)
    try:
        # Every job of every process draws from one budget per API key (WORKER_GAME_PLATFORM_RPS in total).
        limiter = shared_limiter(
            ctx.resources, settings, ctx.pool, call_timeout_s=min(ctx.settings.db_call_timeout_s, 5.0)
        )
        async with GamePlatformClient.from_settings(settings, limiter=limiter) as client:
            return await sync_all_competitor_game_stats(
                ctx.pool,
                client,
                coach_id=payload.coach_id,
                dry_run=payload.dry_run,
                stale_after=stale,
                resume_since=since,
                batch_size=settings.game_platform_batch_size,
                concurrency=settings.game_platform_concurrency,
                progress=ctx.progress,
            )
    finally:
        await ctx.flush_progress()


def game_platform_sync_task() -> Task[GamePlatformSyncPayload]:
    """The task as the `worker.tasks` entry point `game_platform_sync` registers it: hourly, like before."""
    return Task(
        TASK_TYPE,
        game_platform_sync,
        GamePlatformSyncPayload,
        description="Sync every competitor's game stats from the game platform.",
        schedules=("0 * * * *",),
        settings_model=GamePlatformSettings,
        # One full sync at a time across every daemon; a coachId sync may run beside it (one per coach).
        concurrency_limit=1,
        concurrency_key="coachId",
    )
