"""`POST /api/jobs/run`: the seed's contract. Process up to `limit` due jobs now, within a time budget.

Jobs are claimed through the same queue operations as the daemon (one statement, SKIP LOCKED, a lease), under
a worker id of their own (`<worker_id>/http`), so a job the daemon is running is never run here and vice
versa. Leases are renewed while the handlers run, and a job whose lease cannot be kept is stopped
(worker/runtime/jobrun.py). When the budget runs out, unfinished jobs are cancelled
and handed back to pending at once (the interrupted attempt is not counted).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker import db, queue
from worker.queue import Finished, Job
from worker.runtime.jobrun import Ran, run_claimed

if TYPE_CHECKING:
    from worker.runtime.daemon import Daemon

__all__ = ["RunReport", "run_jobs", "runner_worker_id"]

log = structlog.get_logger("worker.http.runjobs")

BUDGET_REASON = "interrupted: the time budget of /api/jobs/run ran out; handed back to pending"
NO_HANDLER_REASON = "not run: this worker has no handler for the task type; handed back to pending"
LOST_REASON = "not recorded: the lease was no longer held (recovered or cancelled meanwhile)"


def runner_worker_id(worker_id: str) -> str:
    return f"{worker_id}/http"


@dataclass(slots=True)
class RunReport:
    results: list[dict[str, Any]] = field(default_factory=list)

    def add(self, job: Job, status: str, attempts: int, duration_ms: int, error: str | None) -> None:
        self.results.append({
            "id": str(job.id), "task_type": job.task_type, "status": status, "attempts": attempts,
            "duration_ms": duration_ms, "error": error,
        })

    def as_json(self) -> dict[str, Any]:
        succeeded = sum(1 for r in self.results if r["status"] == "succeeded")
        return {
            "status": "ok",
            "processed": len(self.results),
            "succeeded": succeeded,
            "failed": len(self.results) - succeeded,
            "results": self.results,
        }


async def run_jobs(
    daemon: Daemon, *, limit: int, ids: Sequence[uuid.UUID] | None = None
) -> RunReport:
    """Claim and run up to `limit` due jobs (or exactly the pending jobs among `ids`) in batches of at most
    the daemon's concurrency, until none is left, the limit is reached or the budget is spent."""
    settings = daemon.settings
    worker_id = runner_worker_id(daemon.worker_id)
    deadline = time.monotonic() + settings.run_budget_s
    report = RunReport()
    wanted = list(ids) if ids is not None else None
    while len(report.results) < limit and time.monotonic() < deadline and not daemon.stop_event.is_set():
        batch = min(limit - len(report.results), settings.concurrency)
        sent = time.monotonic()
        async with db.bounded(daemon.pool, settings.db_call_timeout_s) as conn:
            if wanted is not None:
                jobs = await queue.claim_ids(conn, wanted[:batch], worker_id=worker_id, lease_s=settings.lease_s)
                wanted = wanted[batch:]
            else:
                jobs = await queue.claim(
                    conn, worker_id=worker_id, task_types=daemon.task_types, limit=batch,
                    lease_s=settings.lease_s,
                )
        if jobs:
            await _run_batch(daemon, worker_id, jobs, deadline, report, sent)
        if wanted is not None and not wanted:
            break
        if wanted is None and len(jobs) < batch:
            break
    log.info(
        "http.jobs_run", worker_id=worker_id, processed=len(report.results),
        succeeded=report.as_json()["succeeded"], limit=limit,
    )
    return report


async def _run_batch(
    daemon: Daemon, worker_id: str, jobs: list[Job], deadline: float, report: RunReport, sent: float
) -> None:
    """Run the batch through the runner run-now uses (worker/runtime/jobrun.py): leases renewed, a job whose lease could
    not be renewed for 80 % of WORKER_LEASE_S stopped and not recorded, so it never overlaps a later attempt."""
    settings = daemon.settings
    skipped: list[Job] = []
    runnable: list[Job] = []
    for job in jobs:
        log.info(
            "job.claimed", job_id=str(job.id), task_type=job.task_type, attempt=job.attempt, worker_id=worker_id,
        )
        daemon.hooks.job_claimed(job)
        (runnable if job.task_type in daemon.registry else skipped).append(job)
    ran = Ran()
    try:
        ran = await run_claimed(daemon.pool, settings, daemon.registry, worker_id, runnable,
                                resources=daemon.resources, budget_s=max(0.0, deadline - time.monotonic()),
                                claimed_at=sent)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(max(5.0, settings.db_connect_timeout_s)):
            await _record(daemon, worker_id, jobs, ran, skipped, report)


async def _record(
    daemon: Daemon, worker_id: str, jobs: list[Job], ran: Ran, skipped: list[Job], report: RunReport,
) -> None:
    finished = ran.finished
    done = [finished[j.id] for j in jobs if j.id in finished]
    skipped_ids = {j.id for j in skipped}
    interrupted = [j for j in jobs if j.id not in finished and j.id not in skipped_ids and j.id not in ran.lost]
    async with db.bounded(daemon.pool, daemon.settings.db_call_timeout_s) as conn:
        acked = await queue.finish(conn, worker_id, done)
        for group, reason in ((interrupted, BUDGET_REASON), (skipped, NO_HANDLER_REASON)):
            if group:
                await queue.release(conn, worker_id, [(j.id, j.attempt, j.started_at) for j in group], reason)
    for job in jobs:
        f = finished.get(job.id)
        if job.id in ran.lost:
            report.add(job, "unknown", job.attempt, 0, f"{LOST_REASON}: {ran.lost[job.id]}")
        elif f is None:
            reason = NO_HANDLER_REASON if job.id in skipped_ids else BUDGET_REASON
            log.warning(
                "job.released", job_id=str(job.id), task_type=job.task_type, attempt=job.attempt,
                worker_id=worker_id, reason=reason,
            )
            report.add(job, "pending", job.attempt - 1, 0, reason)
        elif f.job_id not in acked:
            log.warning(
                "job.ack_rejected", job_id=str(job.id), task_type=job.task_type, attempt=job.attempt,
                worker_id=worker_id, reason=LOST_REASON,
            )
            report.add(job, "unknown", f.attempt, f.duration_ms, LOST_REASON)
        else:
            _log_finished(f, worker_id)
            daemon.hooks.job_finished(f)
            report.add(job, f.status, f.attempt, f.duration_ms, f.error)


def _log_finished(f: Finished, worker_id: str) -> None:
    common = {
        "job_id": str(f.job_id), "task_type": f.task_type, "attempt": f.attempt, "duration_ms": f.duration_ms,
        "worker_id": worker_id,
    }
    if f.outcome == "succeeded":
        log.info("job.succeeded", **common)
    elif f.outcome == "retry":
        log.warning("job.failed", error=f.error, retry_at=f.retry_at.isoformat() if f.retry_at else None, **common)
    else:
        log.error("job.failed_permanently", error=f.error, **common)
