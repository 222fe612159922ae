"""One way to run a job. The per-job core (`attempt`) and the lease keeping (worker.leases.LeaseKeeper) are what
every path that runs claimed jobs shares: the daemon's fetch loop (which batches claims, completions and lease
renewals for many jobs around them), `POST /api/jobs/run`, the admin page's run-now and `worker jobs run-now`
(`run_claimed`, below).

The rule they share: a job runs under its task's timeout (worker.deadlines: one timer for all running jobs), its
lease is renewed, and a job whose lease could not be renewed for 80 % of WORKER_LEASE_S, or that its lease
keeper finds cancelled or recovered, is stopped and not recorded, so that it never overlaps an attempt another
worker starts after recovering it (tests/test_run_now_faults.py, tests/test_http_run_fencing.py). The `Finished`
record is built by worker.runner.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from worker.backoff import BackoffPolicy
from worker.queue import Finished, Job
from worker.runtime.deadlines import Deadlines
from worker.runtime.leases import LeaseKeeper, RunningJob
from worker.runtime.runner import failure, run_handler
from worker.settings import Settings
from worker.task_policy import backoff_for, timeout_for
from worker.tasks import Registry, Task, TaskContext

__all__ = ["Plan", "Ran", "attempt", "plan_for", "run_claimed"]

log = structlog.get_logger("worker.jobrun")


@dataclass(frozen=True, slots=True)
class Plan:
    """How one task type's jobs run: its handler, timeout and retry backoff (its policy after overrides)."""

    task: Task[Any]
    timeout_s: float
    policy: BackoffPolicy


def plan_for(task: Task[Any], settings: Settings) -> Plan:
    return Plan(task, settings.timeout_for(task.name, timeout_for(task, settings)), backoff_for(task, settings))


async def attempt(rj: RunningJob, plan: Plan, ctx: TaskContext, deadlines: Deadlines) -> Finished | None:
    """Run the held job `rj` (its task is this coroutine's): the handler under the task's timeout, its end
    classified. None: its runner stopped it (rj.stop_reason 'lease', 'shutdown' or 'budget'), nothing to record as
    run. A cancellation that is not the runner's own (rj.stop_reason None) goes through."""
    job = rj.job
    started = time.monotonic()
    deadlines.watch(rj, plan.timeout_s)
    try:
        return await run_handler(plan.task, job, ctx, plan.policy)
    except asyncio.CancelledError:
        if rj.stop_reason is None:
            raise
        if rj.stop_reason == "timeout":
            return failure(job, f"timed out after {plan.timeout_s:g}s", started, plan.policy, permanent=False)
        return None


@dataclass(slots=True)
class Ran:
    finished: dict[uuid.UUID, Finished] = field(default_factory=dict)
    """Attempts that ended (success, retry, failure, timeout): to be recorded."""
    lost: dict[uuid.UUID, str] = field(default_factory=dict)
    """Stopped because the lease was lost or could not be renewed: never recorded by this process."""
    interrupted: list[Job] = field(default_factory=list)
    """Stopped by the budget: to be handed back."""


async def run_claimed(
    pool: asyncpg.Pool, settings: Settings, registry: Registry, worker_id: str, jobs: Sequence[Job], *,
    resources: dict[str, Any], budget_s: float | None = None, claimed_at: float | None = None,
) -> Ran:
    """Run `jobs` (claimed by `worker_id`, every task type known to `registry`) at once through `attempt`,
    renewing their leases, until they end, the budget runs out, or their lease is lost. `claimed_at`: when the
    claim was sent (time.monotonic()), from which the leases and so the fence clock run."""
    ran = Ran()
    held: dict[uuid.UUID, RunningJob] = {}

    def stop(rj: RunningJob, reason: str) -> None:
        if rj.stop_reason is None and rj.task is not None:
            rj.stop_reason = reason
            rj.task.cancel()

    async def one(rj: RunningJob) -> None:
        job = rj.job
        try:
            ctx = TaskContext(job=job, worker_id=worker_id, resources=resources)
            finished = await attempt(rj, plan_for(registry.get(job.task_type), settings), ctx, deadlines)
        finally:
            held.pop(job.id, None)
        if finished is not None:
            ran.finished[job.id] = finished
        elif rj.stop_reason == "budget":
            ran.interrupted.append(job)

    def lose(rj: RunningJob, reason: str) -> None:
        if rj.stop_reason is None and rj.task is not None:
            log.warning("job.lease_lost", job_id=str(rj.job.id), task_type=rj.job.task_type, attempt=rj.job.attempt,
                        worker_id=worker_id, reason=reason)
            ran.lost[rj.job.id] = reason
            stop(rj, "lease")

    deadlines = Deadlines(lambda: held.values(), lambda rj: stop(rj, "timeout"))
    loop = asyncio.get_running_loop()
    for job in jobs:
        now = time.monotonic()
        rj = RunningJob(job, started=now, last_lease_ok=now if claimed_at is None else claimed_at)
        held[job.id] = rj
        rj.task = loop.create_task(one(rj), name=f"job {job.id}")
    tasks = [rj.task for rj in held.values() if rj.task is not None]
    keeper = LeaseKeeper(
        pool, worker_id, lease_s=settings.lease_s, renew_every_s=settings.heartbeat_interval_s,
        held=lambda: list(held.values()), also_renew=lambda: [], lose=lose,
    )
    keeping = loop.create_task(keeper.run(), name="leases")
    try:
        _, pending = await asyncio.wait(tasks, timeout=budget_s)
        for rj in list(held.values()):
            if rj.task in pending:
                stop(rj, "budget")
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for rj in list(held.values()):  # cancelled from outside (shutdown): stop the jobs with us
            stop(rj, "budget")
        deadlines.close()
        keeping.cancel()
        await asyncio.gather(keeping, *tasks, return_exceptions=True)
    return ran
