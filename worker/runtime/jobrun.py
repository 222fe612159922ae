"""Run jobs already claimed by this process outside the daemon's fetch loop (`POST /api/jobs/run`, `worker jobs
run-now`), under the daemon's lease rule: the leases are renewed (leases.LeaseKeeper, each renewal under a
client-side deadline) and a job whose lease could not be renewed for 80 % of WORKER_LEASE_S is stopped and not
recorded, so that it never overlaps an attempt another worker starts after recovering it
(tests/test_run_now_faults.py).
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

from worker.queue import Finished, Job
from worker.runtime.leases import LeaseKeeper, RunningJob
from worker.runtime.runner import execute, failure
from worker.settings import Settings
from worker.task_policy import backoff_for, timeout_for
from worker.tasks import Registry, TaskContext

__all__ = ["Ran", "run_claimed"]

log = structlog.get_logger("worker.jobrun")


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
    resources: dict[str, Any], budget_s: float | None = None,
) -> Ran:
    """Run `jobs` (claimed by `worker_id`, every task type known to `registry`) at once, renewing their leases,
    until they end, the budget runs out, or their lease is lost."""
    ran = Ran()
    held: dict[uuid.UUID, RunningJob] = {}

    async def one(rj: RunningJob) -> None:
        job = rj.job
        task = registry.get(job.task_type)
        ctx = TaskContext(job=job, worker_id=worker_id, resources=resources)
        policy = backoff_for(task, settings)
        started = time.monotonic()
        try:
            ran.finished[job.id] = await execute(
                task, job, ctx, timeout_s=settings.timeout_for(job.task_type, timeout_for(task, settings)),
                policy=policy,
            )
        except asyncio.CancelledError:
            if rj.stop_reason is None:
                raise
            if rj.stop_reason == "budget":
                ran.interrupted.append(job)
            elif rj.stop_reason == "timeout":
                ran.finished[job.id] = failure(job, "timed out", started, policy, permanent=False)
        finally:
            held.pop(job.id, None)

    def lose(rj: RunningJob, reason: str) -> None:
        if rj.stop_reason is None and rj.task is not None:
            log.warning("job.lease_lost", job_id=str(rj.job.id), task_type=rj.job.task_type, attempt=rj.job.attempt,
                        worker_id=worker_id, reason=reason)
            rj.stop_reason = "lease"
            ran.lost[rj.job.id] = reason
            rj.task.cancel()

    loop = asyncio.get_running_loop()
    for job in jobs:
        rj = RunningJob(job, started=time.monotonic())
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
            if rj.task in pending and rj.stop_reason is None and rj.task is not None:
                rj.stop_reason = "budget"
                rj.task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for rj in list(held.values()):  # cancelled from outside (shutdown): stop the jobs with us
            if rj.task is not None and not rj.task.done():
                rj.stop_reason = rj.stop_reason or "budget"
                rj.task.cancel()
        keeping.cancel()
        await asyncio.gather(keeping, *tasks, return_exceptions=True)
    return ran
