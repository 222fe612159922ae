"""Lease keeping: renew the leases of the jobs this worker holds, and stop any job whose lease it could not
renew for most of a lease period (self-fencing), so that two attempts of a job never overlap.

Renewal and fencing run apart: a renewal stuck on a black-holed connection (no error, no answer) must not hold
up the fencing, which has to stop a job before its lease can run out and another worker takes it over.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import asyncpg
import structlog

from worker import db, queue
from worker.errors import DatabaseUnavailable
from worker.hooks import Hooks
from worker.queue import Job

__all__ = ["LeaseKeeper", "RunningJob", "report_recovered"]

log = structlog.get_logger("worker.leases")


@dataclass(slots=True)
class RunningJob:
    """A job this worker holds (running, or claimed ahead and waiting for a slot) and its lease state."""

    job: Job
    task: asyncio.Task[None] | None = None
    last_lease_ok: float = field(default_factory=time.monotonic)
    stop_reason: str | None = None
    """Why its runner stopped or dropped this job: 'lease' (lease lost), 'timeout', 'shutdown' or 'budget'."""
    started: float = math.inf
    """When the job started (time.monotonic); inf while it waits for a slot."""
    deadline: float = math.inf
    """When a running job is stopped for taking too long (the event loop's clock)."""


class LeaseKeeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        worker_id: str,
        *,
        lease_s: float,
        renew_every_s: float,
        held: Callable[[], Iterable[RunningJob]],
        also_renew: Callable[[], Iterable[uuid.UUID]],
        lose: Callable[[RunningJob, str], None],
    ) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.renew_every_s = renew_every_s
        self.held = held
        """The jobs to renew and fence."""
        self.also_renew = also_renew
        """Ids renewed without fencing (finished attempts whose completion is not written yet)."""
        self.lose = lose

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._fence_loop)
            while True:
                await anyio.sleep(self.renew_every_s)
                await self.renew_once()

    async def _fence_loop(self) -> None:
        while True:
            await anyio.sleep(self.lease_s / 20)
            self.fence(time.monotonic())

    async def renew_once(self) -> None:
        jobs = {rj.job.id: rj for rj in self.held()}
        ids = [*jobs, *(i for i in self.also_renew() if i not in jobs)]
        now = time.monotonic()  # taken before the renewal is sent: the lease runs at least this long from here
        if ids:
            held: set[uuid.UUID] | None = None
            try:
                # Bounded: a connection that never answers is discarded so the next renewal can get through.
                async with db.bounded(self.pool, self.renew_every_s) as conn:
                    held = await queue.heartbeat(conn, self.worker_id, ids, self.lease_s)
            except DatabaseUnavailable as exc:
                log.warning("heartbeat.database_unavailable", error=str(exc), jobs=len(ids))
            else:
                # Only a job still held now is lost: one that finished while the renewal was on its way had its row
                # released by its own finish (tests/test_lease_deadlock.py: no lease_lost under a stream of jobs).
                still = {rj.job.id for rj in self.held()}
                for job_id, rj in jobs.items():
                    if job_id in held:
                        rj.last_lease_ok = now
                    elif rj.stop_reason is None and job_id in still:
                        self.lose(rj, "lease no longer held (cancelled or recovered)")
        self.fence(time.monotonic())

    def fence(self, now: float) -> None:
        limit = self.lease_s * 0.8
        for rj in list(self.held()):
            if rj.stop_reason is None and now - rj.last_lease_ok > limit:
                self.lose(rj, f"lease not renewed for {now - rj.last_lease_ok:.1f}s")


def report_recovered(rows: Iterable[Mapping[str, Any]], worker_id: str, hooks: Hooks) -> None:
    """Log and report the jobs whose expired leases a claim recovered (pending again, or failed for good)."""
    for row in rows:
        log.warning(
            "job.lease_recovered", job_id=str(row["id"]), task_type=row["task_type"], attempt=row["attempts"],
            status=row["status"], abandoned_by=row["locked_by"], worker_id=worker_id,
        )
        hooks.lease_recovered(row)
