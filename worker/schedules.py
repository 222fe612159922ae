"""The schedules tasks declare (cron expressions in UTC), as the scheduler (worker/runtime/scheduler.py), the
schedules' track record (worker/history.py), `worker tasks`, `worker schedules` and `worker doctor` read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from worker.tasks import Registry

__all__ = ["Schedule", "schedules_of"]


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    cron: str
    """A cron expression in UTC; empty = disabled."""
    task_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.cron.strip())

    def latest_slot(self, now: datetime) -> datetime:
        """The latest fire time at or before `now`."""
        slot: datetime = croniter(self.cron, now + timedelta(microseconds=1)).get_prev(datetime)
        return slot.astimezone(UTC)

    def next_slot(self, now: datetime) -> datetime:
        """The first fire time strictly after `now`."""
        slot: datetime = croniter(self.cron, now).get_next(datetime)
        return slot.astimezone(UTC)

    def dedupe_key(self, slot: datetime) -> str:
        return f"schedule:{self.name}:{slot.astimezone(UTC).isoformat()}"


def schedules_of(registry: Registry, *, declared: Registry | None = None) -> list[Schedule]:
    """The schedules the tasks declare (overrides applied; checked when the task was built). A task's first
    schedule is named after the task (the name keys its slot in job_queue_schedule, whose check allows a-z 0-9 _:
    other characters become _), further ones `<name>_<n>`."""
    found = []
    for task in registry:
        base = re.sub(r"[^a-z0-9_]", "_", task.name)[:58]
        for i, cron in enumerate(task.schedules):
            name = base if i == 0 else f"{base}_{i + 1}"
            found.append(Schedule(name, cron, task.name, priority=task.priority))
    if declared is not None:  # what the tasks declare and an override turned off: listed, disabled (cron "")
        named = {s.name for s in found}
        found += [Schedule(s.name, "", s.task_type, priority=s.priority) for s in schedules_of(declared)
                  if s.name not in named and s.task_type in registry]
    return found
