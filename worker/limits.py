"""Global concurrency limits of task types: declared with the task (`Task.concurrency_limit`, `concurrency_key`),
overridable from the environment, published to `job_queue_limits` by each daemon at start-up and enforced by
the claim itself (migration 010): at most N jobs of a type running across every daemon, or N per value of a
payload field. A limit changed by configuration takes effect when a daemon starts with it (the last daemon to
start wins, for the task types it handles).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.db import translate
from worker.errors import ConfigError
from worker.queue import Executor
from worker.sql import queries
from worker.tasks import MAX_CONCURRENCY_LIMIT, Registry, Task, check_limit

__all__ = ["SlotState", "env_name", "publish", "slots", "task_limits", "with_limit_overrides"]

_Q = queries("limits")
_FIELDS = ("concurrency_limit", "concurrency_key")
_ENV = re.compile(r"^WORKER_TASK_([A-Z0-9_]+?)__(CONCURRENCY_LIMIT|CONCURRENCY_KEY)$")
_UNSET = frozenset({"", "none"})


def env_name(task_name: str, field: str) -> str:
    """`WORKER_TASK_<NAME>__<FIELD>`: the task's name upper-cased, punctuation as `_`."""
    return f"WORKER_TASK_{re.sub(r'[^A-Z0-9]', '_', task_name.upper())}__{field.upper()}"


def with_limit_overrides(registry: Registry, environ: Mapping[str, str] | None = None) -> Registry:
    """The registry with each task's `WORKER_TASK_<NAME>__CONCURRENCY_LIMIT` (an integer, or `none`) and
    `__CONCURRENCY_KEY` (a payload field, or `none`) applied. A bad value, or a variable naming no task, is a
    ConfigError of one line (exit 2 before anything connects: tests/test_limits_process.py)."""
    env = os.environ if environ is None else environ
    by_env = {re.sub(r"[^A-Z0-9]", "_", t.name.upper()): t for t in registry}
    for name in sorted(env):
        match = _ENV.match(name)
        if match and match.group(1) not in by_env:
            raise ConfigError(f"invalid setting: {name}: no task type is named so (known: "
                              f"{', '.join(registry.names())})")
    out = Registry()
    for task in registry:
        changes: dict[str, Any] = {}
        for field in _FIELDS:
            var = env_name(task.name, field)
            if var in env:
                changes[field] = _parse(var, field, env[var])
        out.add(_replaced(task, changes) if changes else task)
    return out


def _parse(var: str, field: str, raw: str) -> int | str | None:
    text = raw.strip()
    if text.lower() in _UNSET:
        return None
    if field == "concurrency_limit":
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_CONCURRENCY_LIMIT:
            raise ConfigError(f"invalid setting: {var}: must be an integer from 1 to {MAX_CONCURRENCY_LIMIT} or "
                              f"'none' (got {text[:40]!r})")
        return int(text)
    return text


def _replaced(task: Task[Any], changes: dict[str, Any]) -> Task[Any]:
    limit = changes.get("concurrency_limit", task.concurrency_limit)
    key = changes.get("concurrency_key", task.concurrency_key)
    if "concurrency_limit" in changes and limit is None and "concurrency_key" not in changes:
        key = None  # no limit: no key either
    try:
        check_limit(task.name, limit, key)
    except ValueError as exc:
        names = " / ".join(env_name(task.name, f) for f in changes)
        raise ConfigError(f"invalid setting: {names}: {exc}") from None
    return dataclasses.replace(task, concurrency_limit=limit, concurrency_key=key)


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
