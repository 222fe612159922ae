"""Global concurrency limits of task types: declared with the task (`Task.concurrency_limit`, `concurrency_key`),
overridable from the environment, published to `job_queue_limits` by each daemon at start-up and enforced by
the claim itself (migration 010): at most N jobs of a type running across every daemon, or N per value of a
payload field. A limit changed by configuration takes effect when a daemon starts with it (the last daemon to
start wins, for the task types it handles).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.db import translate
from worker.queue import Executor
from worker.sql import queries
from worker.tasks import Registry, Task

__all__ = ["SlotState", "publish", "slots", "task_limits"]

_Q = queries("limits")
async def publish(conn: Executor, tasks: Iterable[Task[Any]], worker_id: str) -> None:
    """Write these tasks' limits to job_queue_limits (the limited upserted, the others' rows removed)."""
    limited = sorted((t for t in tasks if t.concurrency_limit is not None), key=lambda t: t.name)
    unlimited = sorted(t.name for t in tasks if t.concurrency_limit is None)
    with translate():
        await conn.fetch(
            _Q["publish_limits"], [t.name for t in limited], [t.concurrency_limit for t in limited],
            [t.concurrency_key for t in limited], unlimited, worker_id,
        )


@dataclass(frozen=True, slots=True)
class SlotState:
    task_type: str
    max_running: int
    key_field: str | None
    running: int
    """Slots in use (for a per-key limit: summed over every key)."""
    waiting: int
    """Due pending jobs of the type (waiting for a slot, or for a claim)."""
    oldest_wait_s: float
    set_by: str | None


async def slots(conn: Executor) -> list[SlotState]:
    """Every limit in force on the database, with its slots in use."""
    with translate():
        rows: Sequence[Any] = await conn.fetch(_Q["slots"])
    return [
        SlotState(r["task_type"], r["max_running"], r["key_field"], int(r["running"]), int(r["waiting"]),
                  max(0.0, float(r["oldest_wait_s"])), r["updated_by"])
        for r in rows
    ]


async def task_limits(conn: Executor, registry: Registry) -> list[dict[str, Any]]:
    """Each task's limits as configured here and as in force on the database, and its slots in use: what
    `worker tasks` and the admin page show."""
    state = {s.task_type: s for s in await slots(conn)}
    out = []
    for task in sorted(registry, key=lambda t: t.name):
        s = state.get(task.name)
        out.append({
            "task_type": task.name,
            "concurrency_limit": task.concurrency_limit,
            "concurrency_key": task.concurrency_key,
            "limit_in_force": None if s is None else s.max_running,
            "key_in_force": None if s is None else s.key_field,
            "slots_in_use": None if s is None else s.running,
            "waiting": None if s is None else s.waiting,
        })
    return out
