"""The `cleanup` task type: retention cleanup of finished jobs, run daily by the schedule it declares."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from worker.operations import cleanup
from worker.tasks import MAINTENANCE_PRIORITY, Task, TaskContext

__all__ = ["CleanupPayload", "cleanup_task", "run_cleanup"]


class CleanupPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    succeeded_older_than_days: float | None = Field(
        default=None, gt=0, le=36500, description="Default: WORKER_RETENTION_SUCCEEDED_DAYS."
    )
    failed_older_than_days: float | None = Field(
        default=None, gt=0, le=36500, description="Default: WORKER_RETENTION_FAILED_DAYS."
    )


async def run_cleanup(payload: CleanupPayload, ctx: TaskContext) -> dict[str, Any]:
    """Delete succeeded jobs past their retention, failed/cancelled ones past theirs, with their ledger rows."""
    settings = ctx.settings
    succeeded_days = payload.succeeded_older_than_days or settings.retention_succeeded_days
    failed_days = payload.failed_older_than_days or settings.retention_failed_days
    result = await cleanup(
        ctx.pool,
        succeeded_older_than=timedelta(days=succeeded_days),
        failed_older_than=timedelta(days=failed_days),
        batch_size=settings.cleanup_batch_size,
    )
    return result.as_dict()


def cleanup_task() -> Task[CleanupPayload]:
    """Daily at 03:15 UTC, in the maintenance lane: claimed ahead of any backlog (docs/maintenance.md;
    tests/test_maintenance.py)."""
    return Task(
        "cleanup", run_cleanup, CleanupPayload, max_attempts=3,
        description="Retention cleanup: deletes old finished jobs and their attempt history in batches.",
        priority=MAINTENANCE_PRIORITY, schedules=("15 3 * * *",),
    )
