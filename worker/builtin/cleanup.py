"""The `cleanup` task type: retention cleanup of finished jobs, run daily by the schedule it declares."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from worker.operations import cleanup
from worker.schedules import schedules_of
from worker.tasks import MAINTENANCE_PRIORITY, Registry, Task, TaskContext

__all__ = ["CleanupPayload", "cleanup_budget_s", "cleanup_run", "cleanup_task", "run_cleanup"]

log = structlog.get_logger("worker.cleanup")


class CleanupPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    succeeded_older_than_days: float | None = Field(
        default=None, gt=0, le=36500, description="Default: WORKER_RETENTION_SUCCEEDED_DAYS."
    )
    failed_older_than_days: float | None = Field(
        default=None, gt=0, le=36500, description="Default: WORKER_RETENTION_FAILED_DAYS."
    )


def cleanup_budget_s(registry: Registry | None, now: datetime, task_type: str = "cleanup") -> float | None:
    """Seconds from `now` to the next slot of the task's schedules (the next run takes over there); None when
    the task is not scheduled (tests/unit/test_cleanup_duty_cycle.py)."""
    if registry is None:
        return None
    slots = [s.next_slot(now) for s in schedules_of(registry) if s.task_type == task_type and s.enabled]
    return min(slots).timestamp() - now.timestamp() if slots else None


async def run_cleanup(payload: CleanupPayload, ctx: TaskContext) -> dict[str, Any]:
    """Delete succeeded jobs past their retention, failed/cancelled ones past theirs, with their ledger rows,
    within `WORKER_CLEANUP_DUTY_CYCLE_PERCENT` of the time and before the next slot of its schedule; a run that
    reaches that slot first stops and logs `cleanup.behind` (a warning: cleanup is not keeping up)."""
    return await cleanup_run(payload, ctx, now=datetime.now(UTC))


async def cleanup_run(
    payload: CleanupPayload,
    ctx: TaskContext,
    *,
    now: datetime,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> dict[str, Any]:
    """`run_cleanup` at wall-clock time `now`, pacing on `clock` and `sleep` (injected by the tests:
    tests/unit/test_cleanup_duty_cycle.py)."""
    settings = ctx.settings
    succeeded_days = payload.succeeded_older_than_days or settings.retention_succeeded_days
    failed_days = payload.failed_older_than_days or settings.retention_failed_days
    budget_s = cleanup_budget_s(ctx.resources.get("registry"), now, ctx.job.task_type)
    result = await cleanup(
        ctx.pool,
        succeeded_older_than=timedelta(days=succeeded_days),
        failed_older_than=timedelta(days=failed_days),
        batch_size=settings.cleanup_batch_size,
        duty_cycle_percent=settings.cleanup_duty_cycle_percent,
        deadline=None if budget_s is None else clock() + budget_s,
        clock=clock,
        sleep=sleep,
    )
    if not result.finished:
        log.warning(
            "cleanup.behind", deleted_jobs=result.jobs, batches=result.batches, busy_s=round(result.busy_s, 3),
            paused_s=round(result.paused_s, 3), budget_s=round(budget_s or 0.0, 3),
            duty_cycle_percent=settings.cleanup_duty_cycle_percent,
            hint="expired jobs are left for the next run: raise WORKER_CLEANUP_DUTY_CYCLE_PERCENT, or run cleanup "
            "more often so each run deletes less",
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
