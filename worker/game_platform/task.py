"""The `game_platform_sync` job: its payload model and its handler.

Payload (the seed's camelCase; snake_case accepted too; unknown keys rejected):
    {"dryRun": bool = false, "coachId": uuid | null, "staleAfterMinutes": int (1..525600) | null}

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

import asyncpg
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from worker.settings import Settings
from worker.tasks import Task, TaskContext

__all__ = ["TASK_TYPE", "GamePlatformSyncPayload", "game_platform_sync", "game_platform_sync_task"]

TASK_TYPE = "game_platform_sync"


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


async def game_platform_sync(payload: GamePlatformSyncPayload, ctx: TaskContext) -> dict[str, Any]:
    """Sync every competitor's game stats from the game platform (honours dryRun, coachId, staleAfterMinutes)."""
    settings: Settings = ctx.resources["settings"]
    pool: asyncpg.Pool = ctx.resources["pool"]
    stale = timedelta(minutes=payload.stale_after_minutes) if payload.stale_after_minutes else None
    # Imported here: httpx and the sync are loaded when a sync runs, not when the worker starts.
    from worker.game_platform.client import GamePlatformClient
    from worker.game_platform.ratelimit import shared_limiter
    from worker.game_platform.sync import sync_all_competitor_game_stats

    # Every job of every process draws from one budget per API key (WORKER_GAME_PLATFORM_RPS in total).
    limiter = shared_limiter(ctx.resources, settings, pool)
    async with GamePlatformClient.from_settings(settings, limiter=limiter) as client:
        return await sync_all_competitor_game_stats(
            pool,
            client,
            coach_id=payload.coach_id,
            dry_run=payload.dry_run,
            stale_after=stale,
            batch_size=settings.game_platform_batch_size,
            concurrency=settings.game_platform_concurrency,
        )


def game_platform_sync_task() -> Task[GamePlatformSyncPayload]:
    return Task(
        TASK_TYPE,
        game_platform_sync,
        GamePlatformSyncPayload,
        description="Sync every competitor's game stats from the game platform.",
        # One full sync at a time across every daemon; a coachId sync may run beside it (one per coach).
        concurrency_limit=1,
        concurrency_key="coachId",
    )
