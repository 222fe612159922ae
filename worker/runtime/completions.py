"""Buffered completions: finished attempts are written a few milliseconds later, many in one statement.

A finished attempt waits here until `finish` records it (status, result, ledger row) in one round trip with the
others that finished meanwhile. If the database is unreachable the batch stays and is retried; the jobs' leases
keep being renewed by the daemon's heartbeat while they wait. Only what the database acknowledged is logged and
reported to the hooks, so logs and metrics never claim a state the database does not have.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import asyncpg
import structlog

from worker import db, queue
from worker.backoff import DATABASE_AWAY, Backoff
from worker.errors import DatabaseUnavailable
from worker.hooks import Hooks
from worker.logs import job_event, job_lines
from worker.queue import Finished
from worker.runtime.wakeup import Wakeup

__all__ = ["Completions"]

log = structlog.get_logger("worker.completions")


class Completions:
    def __init__(
        self, pool: asyncpg.Pool, worker_id: str, hooks: Hooks, *, flush_ms: float, call_timeout_s: float = 10.0
    ) -> None:
        self.pool = pool
        self.call_timeout_s = call_timeout_s
        self.worker_id = worker_id
        self.hooks = hooks
        self.flush_s = flush_ms / 1000
        self.pending: dict[uuid.UUID, Finished] = {}
        self.needed = Wakeup()
        self.retry_due: list[float] = []
        """Monotonic times at which retries this worker scheduled fall due (no NOTIFY marks those)."""
        self.on_retry_scheduled: Wakeup | None = None
        self._flushing = anyio.Lock()

    def add(self, finished: Finished) -> None:
        self.pending[finished.job_id] = finished
        self.needed.set()

    async def run(self) -> None:
        """The flush loop: wait for work, gather for `flush_ms`, write, back off while the database is away."""
        backoff = Backoff(DATABASE_AWAY)
        while True:
            await self.needed.wait()
            if self.flush_s > 0:
                await anyio.sleep(self.flush_s)
            self.needed.clear()
            if await self.flush():
                backoff.succeeded()
                continue
            await anyio.sleep(backoff.failed())
            self.needed.set()

    async def flush(self) -> bool:
        """Write everything buffered in one statement. False when the database could not be reached.

        One flush at a time: the flush loop and the daemon's last flush at shutdown may both call this, and
        two writers of one batch would record it twice."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        batch = list(self.pending.values())
        if not batch:
            return True
        try:
            async with db.bounded(self.pool, self.call_timeout_s) as conn:
                acked = await queue.finish(conn, self.worker_id, batch)
        except DatabaseUnavailable as exc:
            log.warning("flush.database_unavailable", error=str(exc), pending=len(batch))
            return False
        now = time.monotonic()
        recorded: list[Finished] = []
        with job_lines(log) as blog:  # one batch of lines, rendered in one step and written together
            for f in batch:
                del self.pending[f.job_id]
                if f.job_id not in acked:
                    blog.warning(
                        "job.ack_rejected", job_id=str(f.job_id), task_type=f.task_type, attempt=f.attempt,
                        worker_id=self.worker_id, reason="lease no longer held (recovered or cancelled)",
                    )
                    continue
                if f.retry_at is not None:
                    self.retry_due.append(now + max(0.0, (f.retry_at - f.finished_at).total_seconds()) + 0.005)
                    if self.on_retry_scheduled is not None:
                        self.on_retry_scheduled.set()
                if f.outcome == "succeeded":  # the common line, without _log's call
                    job_event(blog, "info", "job.succeeded", f.job_id, f.task_type, f.attempt, self.worker_id,
                              f.duration_ms)
                else:
                    _log(blog, f, self.worker_id)
                recorded.append(f)
        if recorded:
            self.hooks.jobs_finished(recorded)
        return True

    def next_retry_in_s(self) -> float | None:
        """Seconds until the earliest retry of ours falls due (None: none); forgets those already due."""
        if not self.retry_due:
            return None
        now = time.monotonic()
        self.retry_due = [t for t in self.retry_due if t > now - 1.0]
        if not self.retry_due:
            return None
        soonest = min(self.retry_due)
        self.retry_due = [t for t in self.retry_due if t > now]
        return max(0.0, soonest - now)


def _log(blog: Any, f: Finished, worker_id: str) -> None:
    if f.outcome == "succeeded":
        job_event(blog, "info", "job.succeeded", f.job_id, f.task_type, f.attempt, worker_id, f.duration_ms)
    elif f.outcome == "retry":
        blog.warning(
            "job.failed", job_id=str(f.job_id), task_type=f.task_type, attempt=f.attempt,
            duration_ms=f.duration_ms, worker_id=worker_id, error=f.error,
            retry_at=f.retry_at.isoformat() if f.retry_at else None,
        )
    else:
        blog.error(
            "job.failed_permanently", job_id=str(f.job_id), task_type=f.task_type, attempt=f.attempt,
            duration_ms=f.duration_ms, worker_id=worker_id, error=f.error,
        )
