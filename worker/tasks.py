"""The task registry: task type -> an async handler and the pydantic model its payload must satisfy.

A handler is a plain async function `handler(payload, ctx) -> result`; it knows nothing of the daemon. The
result (JSON-serialisable, or None) is stored on the job row. Raise `PermanentJobError` to fail without retry.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from worker.errors import InvalidPayload, UnknownTaskType
from worker.jsonvalues import Undecodable
from worker.queue import Job, validate_task_type

__all__ = ["EmptyPayload", "Registry", "Task", "TaskContext", "format_validation_error"]

P = TypeVar("P", bound=BaseModel)


class EmptyPayload(BaseModel):
    """For task types that take no arguments; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a handler may know about the run: the job, and shared resources the daemon set up."""

    job: Job
    worker_id: str
    resources: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Any, TaskContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Task(Generic[P]):
    name: str
    handler: Callable[[P, TaskContext], Awaitable[Any]]
    payload_model: type[P]
    timeout_s: float | None = None
    """None = the settings' default timeout."""
    max_attempts: int | None = None
    """Default for jobs enqueued through this worker; None = the settings' default."""
    description: str = ""
    concurrency_limit: int | None = None
    """At most this many jobs of this type running at once across every daemon on the database (None = no
    limit); enforced inside the claim (worker/limits.py, migration 010)."""
    concurrency_key: str | None = None
    """A payload field: with it, the limit holds per value of that field (jobs without it share one value)."""

    def __post_init__(self) -> None:
        check_limit(self.name, self.concurrency_limit, self.concurrency_key)

    def parse(self, payload: Any) -> P:
        if isinstance(payload, Undecodable):  # a poison row fails its own job (tests/test_poison_rows.py)
            raise InvalidPayload(f"invalid payload for {self.name}: {payload.reason}")
        try:
            # What model_validate does, without its Python wrapper (0.8 us against 2.0 for an empty payload:
            # every job's payload is parsed here).
            parsed: P = self.payload_model.__pydantic_validator__.validate_python(payload)
            return parsed
        except ValidationError as exc:
            raise InvalidPayload(f"invalid payload for {self.name}: {format_validation_error(exc)}") from None


MAX_CONCURRENCY_LIMIT = 100_000
_KEY_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def check_limit(name: str, limit: int | None, key: str | None) -> None:
    """A task's concurrency limit as job_queue_limits accepts it (migration 010); ValueError naming the task."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 1 <= limit <= MAX_CONCURRENCY_LIMIT):
        raise ValueError(f"task {name}: concurrency_limit must be an integer from 1 to {MAX_CONCURRENCY_LIMIT}")
    if key is not None and (not isinstance(key, str) or not _KEY_FIELD.match(key)):
        raise ValueError(f"task {name}: concurrency_key must be a payload field name (letters, digits, _)")
    if key is not None and limit is None:
        raise ValueError(f"task {name}: concurrency_key needs a concurrency_limit")


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        # Keys come from the caller: shown escaped when not printable, so the message stays on one line.
        loc = ".".join(str(p) if str(p).isprintable() else repr(p) for p in err.get("loc", ())) or "payload"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class Registry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any]] = {}

    def add(self, task: Task[Any]) -> Task[Any]:
        validate_task_type(task.name)
        if task.name in self._tasks:
            raise ValueError(f"task type {task.name!r} is registered twice")
        self._tasks[task.name] = task
        return task

    def register(
        self,
        name: str,
        payload_model: type[P],
        *,
        timeout_s: float | None = None,
        max_attempts: int | None = None,
        description: str = "",
    ) -> Callable[[Callable[[P, TaskContext], Awaitable[Any]]], Callable[[P, TaskContext], Awaitable[Any]]]:
        def deco(fn: Callable[[P, TaskContext], Awaitable[Any]]) -> Callable[[P, TaskContext], Awaitable[Any]]:
            self.add(Task(name, fn, payload_model, timeout_s, max_attempts, description or (fn.__doc__ or "")))
            return fn

        return deco

    def get(self, name: str) -> Task[Any]:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTaskType(f"unknown task type {name!r}") from None

    def validate(self, name: str, payload: Any) -> BaseModel:
        """The check every face runs before enqueueing: known type and a valid payload."""
        parsed: BaseModel = self.get(name).parse(payload)
        return parsed

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task[Any]]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)
