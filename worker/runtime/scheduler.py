"""Recurring schedules inside the daemon: the cron expressions tasks declare (croniter) -> one job per slot.

Each schedule's latest slot is claimed with a forward-only conditional upsert on `job_queue_schedule` in the
same transaction as the enqueue, so whatever the number of replicas a slot is enqueued once and a finished
slot is never enqueued again; the job's dedupe key `schedule:<name>:<slot>` is a second guard. After downtime
only the latest missed slot is enqueued. A schedule seen for the first time starts at its next slot.

A schedule's job gets its task's declared priority. A maintenance task (cleanup) declares MAINTENANCE_PRIORITY, the
highest priority a job can have: every claim takes due jobs by priority first, so the next claim of any replica
takes it ahead of whatever backlog the queue holds (docs/maintenance.md; tests/test_maintenance.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import structlog

from worker import queue
from worker.backoff import SCHEDULER_AWAY, Backoff
from worker.db import bounded, translate
from worker.errors import DatabaseUnavailable, InvalidInput
from worker.schedules import Schedule, schedules_of
from worker.settings import Settings
from worker.sql import queries
from worker.tasks import MAINTENANCE_PRIORITY, Registry

__all__ = ["MAINTENANCE_PRIORITY", "Fired", "Scheduler"]

log = structlog.get_logger("worker.scheduler")
_Q = queries("operator")
MAX_SLEEP_S = 60.0


@dataclass(frozen=True, slots=True)
class Fired:
    schedule: str
    slot: datetime
    job_id: Any
    created: bool


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        pool: asyncpg.Pool,
        *,
        schedules: list[Schedule] | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.pool = pool
        self.schedules = schedules if schedules is not None else schedules_of(registry)
        self.now = now
        self._warned: set[str] = set()

    def active(self) -> list[Schedule]:
        """Enabled schedules whose task type this worker knows (others are skipped with one warning)."""
        usable = []
        for s in self.schedules:
            if not s.enabled:
                continue
            if s.task_type not in self.registry:
                if s.name not in self._warned:
                    self._warned.add(s.name)
                    log.warning("schedule.unknown_task_type", schedule=s.name, task_type=s.task_type)
                continue
            usable.append(s)
        return usable

    async def tick(self) -> list[Fired]:
        """Enqueue the latest slot of every schedule that has not had it yet; returns what was enqueued."""
        now = self.now()
        fired = []
        for s in self.active():
            result = await self.fire(s, s.latest_slot(now))
            if result is not None:
                fired.append(result)
        return fired

    async def fire(self, schedule: Schedule, slot: datetime) -> Fired | None:
        """Claim `slot` for `schedule` and enqueue its job, atomically; None when another replica (or an
        earlier tick) already had this slot or a later one, or when the schedule is new."""
        task = self.registry.get(schedule.task_type)
        try:
            task.parse(schedule.payload)
        except InvalidInput as exc:
            if schedule.name not in self._warned:
                self._warned.add(schedule.name)
                log.error("schedule.invalid_payload", schedule=schedule.name, error=str(exc))
            return None
        max_attempts = task.max_attempts or self.settings.default_max_attempts
        with translate():
            async with bounded(self.pool, self.settings.db_call_timeout_s) as conn, conn.transaction():
                row = await conn.fetchrow(
                    _Q["schedule_claim_slot"], schedule.name, schedule.cron, schedule.task_type, slot
                )
                if row is None:
                    return None
                if row["first_seen"]:
                    log.info("schedule.registered", schedule=schedule.name, cron=schedule.cron,
                             next_slot=schedule.next_slot(slot).isoformat())
                    return None
                enq = await queue.enqueue(
                    conn,
                    queue.NewJob(
                        schedule.task_type, dict(schedule.payload), max_attempts=max_attempts,
                        dedupe_key=schedule.dedupe_key(slot), priority=schedule.priority,
                    ),
                )
                await conn.execute(_Q["schedule_set_job"], schedule.name, enq.id)
        log.info("schedule.enqueued", schedule=schedule.name, slot=slot.isoformat(), job_id=str(enq.id),
                 created=enq.created)
        return Fired(schedule.name, slot, enq.id, enq.created)

    def seconds_until_next(self) -> float:
        now = self.now()
        nexts = [s.next_slot(now) for s in self.active()]
        if not nexts:
            return MAX_SLEEP_S
        wait = (min(nexts) - now).total_seconds()
        return min(MAX_SLEEP_S, max(0.05, wait + 0.05))

    async def run(self) -> None:
        """The daemon's supervised loop: tick at every slot; database trouble is waited out, not fatal."""
        log.info("scheduler.started", schedules=[(s.name, s.cron) for s in self.active()])
        backoff = Backoff(SCHEDULER_AWAY)
        while True:
            try:
                await self.tick()
                backoff.succeeded()
                delay = self.seconds_until_next()
            except DatabaseUnavailable as exc:
                delay = backoff.failed()
                log.warning("scheduler.database_unavailable", error=str(exc), retry_in_s=round(delay, 2))
            await anyio.sleep(delay)
