"""The `cleanup` task type: retention cleanup of finished jobs, run daily by the schedule it declares.

A run is a chain of short pieces (docs/maintenance.md, "Cleanup never starves the queue it protects"): each
`cleanup` job deletes batches for at most half of `WORKER_CLAIM_AHEAD_BELOW_MS`, then enqueues the next piece,
due at once while the queue keeps up (no due job has waited `WORKER_CLEANUP_YIELD_AFTER_S`), else after the
duty cycle's pause, carrying where it stopped and the run's deadline (the next slot of its schedule). A
scheduled run is also paced over its window (`WORKER_CLEANUP_SPREAD_S`, "A run spreads its deletes over its
window"): a piece ahead of that pace makes the next one due later. No piece runs long (long jobs holding half
the slots stop the daemon claiming ahead), and no piece holds a slot while it pauses."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from worker import queue
from worker.operations import cleanup, duty_cycle_pause, oldest_due_wait_s
from worker.queue import NewJob
from worker.schedules import schedules_of
from worker.tasks import MAINTENANCE_PRIORITY, Registry, Task, TaskContext

__all__ = [
    "CleanupPayload", "DueWaitProbe", "cleanup_budget_s", "cleanup_run", "cleanup_task", "key_ms", "run_cleanup",
    "spread_pause_s",
]

log = structlog.get_logger("worker.cleanup")

PROBE_MAX_AGE_S = 1.0
SPREAD_SHARE = 0.8
"""A run spreads its deletes over at most this share of the time to its next slot; the rest is the margin for
an estimate of its progress that is only as good as the ids' times."""


class DueWaitProbe:
    """How long the oldest due job has waited, read from the database at most once per `max_age_s` and the
    last reading returned in between (tests/unit/test_cleanup_duty_cycle.py). Under a backlog a run's pieces
    follow each other several times a second, and each reading walks the head of job_queue_claim_idx, which
    until the next vacuum holds an entry for every job claimed since the last one: read per piece, the probe
    cost more than the piece's own delete. One per daemon, kept in the tasks' shared resources."""

    def __init__(self, max_age_s: float = PROBE_MAX_AGE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s, self.clock = max_age_s, clock
        self._read_at: float | None = None
        self._wait_s: float | None = None

    async def __call__(self, read: Callable[[], Awaitable[float | None]]) -> float | None:
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.max_age_s:
            self._wait_s = await read()
            self._read_at = now
        return self._wait_s


class CleanupPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    succeeded_older_than_days: float | None = Field(
        default=None, gt=0, le=36500, description="Default: WORKER_RETENTION_SUCCEEDED_DAYS."
    )
    failed_older_than_days: float | None = Field(
        default=None, gt=0, le=36500, description="Default: WORKER_RETENTION_FAILED_DAYS."
    )
    until: datetime | None = Field(
        default=None, description="Set by the run's earlier piece: the run stops here (its schedule's next slot)."
    )
    after_created_at: datetime | None = Field(
        default=None,
        description="Ignored: carried by pieces enqueued before migration 018, whose key was (created_at, id).",
    )
    after_id: uuid.UUID | None = Field(default=None, description="Set by the run's earlier piece: where it stopped.")
    deleted_before: int = Field(default=0, ge=0, description="Set by the run's earlier piece: jobs it deleted.")
    began_at: datetime | None = Field(default=None, description="Set by the run's first piece: when it started.")
    began_key_ms: int | None = Field(
        default=None, ge=0, description="Set by the run's first piece: the time carried by the id where it stopped."
    )


def key_ms(key: uuid.UUID) -> int | None:
    """The Unix milliseconds a version-7 id carries in its first 48 bits; None for any other id."""
    return int.from_bytes(key.bytes[:6], "big") if key.version == 7 else None


def spread_pause_s(
    *, began_at: datetime, began_key_ms: int | None, at_key_ms: int | None, now: datetime, until: datetime,
    spread_s: float, retention_s: float,
) -> float:
    """How long the next piece of a run waits so that the run's deletes spread evenly over its window: from
    `began_at` for `spread_s` seconds, or `SPREAD_SHARE` of the time to `until` if that is shorter
    (tests/unit/test_cleanup_spread.py).

    The walk deletes in id order, and a version-7 id carries its job's creation time, so the run's progress is
    how far the time of the id it stopped at (`at_key_ms`) has gone from `began_key_ms` (where its first piece
    stopped) toward the cutoff at the window's end (that time minus `retention_s`, the shorter retention). The
    line starts no earlier than one slot's worth of ids before the cutoff at `began_at`: what a run deletes
    before that (failed jobs kept longer, a backlog after downtime) counts as behind. A run ahead of that line
    waits until the line reaches it; a run behind it (or whose ids carry no time) does not wait, so a wrong
    estimate can only make it run as it would unpaced. Never past the window's end."""
    if spread_s <= 0 or began_key_ms is None or at_key_ms is None:
        return 0.0
    slot_s = (until - began_at).total_seconds()
    window_s = min(spread_s, SPREAD_SHARE * slot_s)
    if window_s <= 0:
        return 0.0
    began_key_ms = max(began_key_ms, int((began_at.timestamp() - retention_s - slot_s) * 1000.0))
    span_ms = (began_at.timestamp() + window_s - retention_s) * 1000.0 - began_key_ms
    if span_ms <= 0:
        return 0.0
    share = min(max((at_key_ms - began_key_ms) / span_ms, 0.0), 1.0)
    return max(0.0, began_at.timestamp() + share * window_s - now.timestamp())


def cleanup_budget_s(registry: Registry | None, now: datetime, task_type: str = "cleanup") -> float | None:
    """Seconds from `now` to the next slot of the task's schedules (the next run takes over there); None when
    the task is not scheduled (tests/unit/test_cleanup_duty_cycle.py)."""
    if registry is None:
        return None
    slots = [s.next_slot(now) for s in schedules_of(registry) if s.task_type == task_type and s.enabled]
    return min(slots).timestamp() - now.timestamp() if slots else None


async def run_cleanup(payload: CleanupPayload, ctx: TaskContext) -> dict[str, Any]:
    """Delete succeeded jobs past their retention, failed/cancelled ones past theirs, with their ledger rows:
    one short piece, then the next piece enqueued after the duty cycle's pause or the pacing's, the longer; a
    run that reaches the next slot of its schedule with jobs left stops and logs `cleanup.behind` (a warning:
    cleanup is not keeping up)."""
    return await cleanup_run(payload, ctx, now=datetime.now(UTC))


async def cleanup_run(
    payload: CleanupPayload,
    ctx: TaskContext,
    *,
    now: datetime,
    clock: Callable[[], float] = time.monotonic,
    enqueue: Callable[[NewJob], Awaitable[object]] | None = None,
    waited_s: Callable[[], Awaitable[float | None]] | None = None,
) -> dict[str, Any]:
    """`run_cleanup` at wall-clock time `now`, timing on `clock`, enqueuing the next piece with `enqueue` and
    reading how long the oldest due job has waited with `waited_s` (both injected by the tests:
    tests/unit/test_cleanup_duty_cycle.py)."""
    settings = ctx.settings
    succeeded_days = payload.succeeded_older_than_days or settings.retention_succeeded_days
    failed_days = payload.failed_older_than_days or settings.retention_failed_days
    until = payload.until
    if until is None:
        budget_s = cleanup_budget_s(ctx.resources.get("registry"), now, ctx.job.task_type)
        until = None if budget_s is None else now + timedelta(seconds=budget_s)
    start = payload.after_id
    began = clock()
    result = await cleanup(
        ctx.pool,
        succeeded_older_than=timedelta(days=succeeded_days),
        failed_older_than=timedelta(days=failed_days),
        batch_size=settings.cleanup_batch_size,
        max_busy_s=settings.claim_ahead_below_ms / 2000.0,  # at least one batch
        start_key=start,
        clock=clock,
    )
    if not result.finished and result.next_key is not None:
        # The duty cycle yields the CPU to the queue while it is behind; while it keeps up cleanup runs on, so
        # that a run deletes what a busy queue produces (tests/unit/test_cleanup_duty_cycle.py). No pause to
        # skip (a 100 % duty cycle): no probe.
        pause_s = duty_cycle_pause(result.busy_s, settings.cleanup_duty_cycle_percent)
        if pause_s > 0:
            if waited_s is None:
                probe: DueWaitProbe = ctx.resources.setdefault("cleanup_due_wait_probe", DueWaitProbe(clock=clock))
                wait_s = await probe(lambda: oldest_due_wait_s(ctx.pool))
            else:
                wait_s = await waited_s()
            if wait_s is None or wait_s <= settings.cleanup_yield_after_s:
                pause_s = 0.0
        ended = now + timedelta(seconds=clock() - began)
        began_at = payload.began_at or now
        began_key_ms = payload.began_key_ms if payload.began_at is not None else key_ms(result.next_key)
        if until is not None:
            # Paced to its window whether or not the queue keeps up: the deletes a busy queue must absorb come
            # evenly rather than all at the start of the run (tests/unit/test_cleanup_spread.py).
            pause_s = max(pause_s, spread_pause_s(
                began_at=began_at, began_key_ms=began_key_ms, at_key_ms=key_ms(result.next_key), now=ended,
                until=until, spread_s=settings.cleanup_spread_s,
                retention_s=min(succeeded_days, failed_days) * 86400.0,
            ))
        due = ended + timedelta(seconds=pause_s)
        deleted = payload.deleted_before + result.jobs
        if until is not None and due >= until:
            log.warning(
                "cleanup.behind", deleted_jobs=deleted, until=until.isoformat(),
                duty_cycle_percent=settings.cleanup_duty_cycle_percent,
                hint="expired jobs are left for the next run: raise WORKER_CLEANUP_DUTY_CYCLE_PERCENT, or run "
                "cleanup more often so each run deletes less",
            )
        else:
            following = payload.model_copy(update={
                "until": until, "after_created_at": None, "after_id": result.next_key, "deleted_before": deleted,
                "began_at": began_at, "began_key_ms": began_key_ms,
            })
            job = NewJob(
                ctx.job.task_type, payload=following.model_dump(mode="json"), run_at=due if pause_s > 0 else None,
                priority=MAINTENANCE_PRIORITY, max_attempts=ctx.job.max_attempts,
                # one next piece per piece, even when this one runs again after a lost lease
                dedupe_key=f"cleanup:{until.isoformat() if until else '-'}:{result.next_key}",
            )
            await (enqueue(job) if enqueue is not None else queue.enqueue(ctx.pool, job))
    return result.as_dict()


def cleanup_task() -> Task[CleanupPayload]:
    """Daily at 03:15 UTC, in the maintenance lane: claimed ahead of any backlog (docs/maintenance.md;
    tests/test_maintenance.py)."""
    return Task(
        "cleanup", run_cleanup, CleanupPayload, max_attempts=3,
        description="Retention cleanup: deletes old finished jobs and their attempt history in batches.",
        priority=MAINTENANCE_PRIORITY, schedules=("15 3 * * *",),
    )
