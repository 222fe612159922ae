"""The task API: a task type is a handler, the pydantic model its payload must satisfy, and its policy.

A handler is a plain async function `handler(payload, ctx) -> result`; it knows nothing of the daemon. The
result (JSON-serialisable, or None) is stored on the job row. Raise `PermanentJobError` to fail without retry.

A task declares its own policy (timeout, attempts, backoff, default priority, cron schedules in UTC); every
policy field can be overridden per task from the environment as `WORKER_TASK_<NAME>__<FIELD>`
(worker/task_policy.py, docs/tasks.md). Tasks are found through the `worker.tasks` entry points and module paths
(worker/discovery.py).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_settings import BaseSettings

from worker.errors import InvalidPayload, UnknownTaskType
from worker.jsonvalues import Undecodable
from worker.progress import ProgressReporter
from worker.queue import Job, validate_task_type
from worker.settings import Settings

__all__ = [
    "MAINTENANCE_PRIORITY", "EmptyPayload", "Registry", "Task", "TaskContext", "format_validation_error", "job_context",
]

P = TypeVar("P", bound=BaseModel)
C = TypeVar("C", bound=BaseSettings)

MAINTENANCE_PRIORITY = 1000
"""The top of job_queue_priority_check's range: a task declaring it is claimed before any other due job."""


class EmptyPayload(BaseModel):
    """For task types that take no arguments; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a handler may know about the run: the job, the work pool, and its task's own settings.

    `ctx.pool` is the pool the runner works with; `ctx.config(MySettings)` is the task's settings class as
    loaded (and validated) at start-up from the environment. `resources` holds what the process shares
    besides (metrics, alerts) and is not part of the task API."""

    job: Job
    worker_id: str
    resources: dict[str, Any] = field(default_factory=dict)
    _reporter: ProgressReporter | None = field(default=None, init=False, repr=False, compare=False)

    def progress(self, done: int, total: int | None = None, phase: str | None = None) -> None:
        """Report how far the job has come: `done` of `total` units (None: unknown) in `phase` (a short word).

        Never blocks and never fails the job for a database problem: the report is written to the job row in
        the background, at most about once a second (worker/progress.py; the latest report wins). A bad value
        raises InvalidInput. Docs: docs/tasks.md ("Progress")."""
        reporter = self._reporter
        if reporter is None:
            reporter = ProgressReporter(self.resources.get("pool"), self.job.id, self.worker_id, self.job.attempt)
            object.__setattr__(self, "_reporter", reporter)  # created on first use: most jobs never report
        reporter.report(done, total, phase)

    async def flush_progress(self) -> None:
        """Write the latest report now (bounded in time); call it after the last report, before returning."""
        if self._reporter is not None:
            await self._reporter.flush()

    @property
    def pool(self) -> Any:
        """The asyncpg pool of the process running the job."""
        return self.resources["pool"]

    @property
    def settings(self) -> Settings:
        """The worker's own settings (retention, timeouts, ...)."""
        found: Settings = self.resources["settings"]
        return found

    def config(self, model: type[C]) -> C:
        """The task's settings of type `model`: the instance loaded at start-up, or (a handler called outside a
        worker, as in a test) loaded from the environment now."""
        configs: dict[type[BaseSettings], BaseSettings] = self.resources.get("task_configs", {})
        found = configs.get(model)
        if found is None:
            found = model()
        assert isinstance(found, model)
        return found


class _Context:
    """TaskContext's slots without its frozen __setattr__ (see `job_context`)."""

    __slots__ = ("_reporter", "job", "resources", "worker_id")


assert sorted(_Context.__slots__) == sorted(TaskContext.__slots__)  # the layout __class__ needs


def job_context(job: Job, worker_id: str, resources: dict[str, Any]) -> TaskContext:
    """`TaskContext(job, worker_id, resources)`, built with plain attribute stores and then made a TaskContext
    (`__class__`, the same slots layout): the daemon builds one per job, and a frozen dataclass's __init__
    makes a call per field (tests/unit/test_claimed_jobs.py: test_a_job_context_is_a_plain_task_context)."""
    ctx: Any = _Context()
    ctx.job, ctx.worker_id, ctx.resources, ctx._reporter = job, worker_id, resources, None
    ctx.__class__ = TaskContext
    return ctx  # type: ignore[no-any-return]


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
    priority: int = 0
    """Default priority of the task's jobs (-1000..1000, higher first): its schedules' and the CLI's."""
    backoff_base_s: float | None = None
    """Delay after the first failure; None = WORKER_BACKOFF_BASE_S."""
    backoff_max_s: float | None = None
    """Cap on any retry delay; None = WORKER_BACKOFF_MAX_S."""
    backoff_jitter: float | None = None
    """Fraction of a delay randomised (0..1); None = WORKER_BACKOFF_JITTER."""
    schedules: tuple[str, ...] = ()
    """Cron expressions (UTC): one job (empty payload) per slot, at `priority`."""
    settings_model: type[BaseSettings] | None = None
    """The task's own settings (pydantic-settings), loaded and validated at start-up; `ctx.config(model)`."""

    concurrency_limit: int | None = None
    """At most this many jobs of this type running at once across every daemon on the database (None = no
    limit); enforced inside the claim (worker/limits.py, migration 010)."""
    concurrency_key: str | None = None
    """A payload field: with it, the limit holds per value of that field (jobs without it share one value)."""

    def __post_init__(self) -> None:
        """A task that breaks its own policy is refused where it is declared (and where an override applies)."""
        validate_task_type(self.name)
        problem = _policy_problem(self)
        if problem:
            raise ValueError(problem)
        check_limit(self.name, self.concurrency_limit, self.concurrency_key)

    def parse(self, payload: Any) -> P:
        if isinstance(payload, Undecodable):  # a poison row fails its own job (tests/test_poison_rows.py)
            raise InvalidPayload(f"invalid payload for {self.name}: {payload.reason}")
        try:
            # What model_validate does, without its Python wrapper: every job's payload is parsed here, and the
            # errors are the same (tests/test_daemon.py, tests/test_hostile_cli.py; figures: docs/performance.md).
            parsed: P = self.payload_model.__pydantic_validator__.validate_python(payload)
            return parsed
        except ValidationError as exc:
            raise InvalidPayload(f"invalid payload for {self.name}: {format_validation_error(exc)}") from None


def _policy_problem(task: Task[Any]) -> str | None:
    if task.timeout_s is not None and not 0 < task.timeout_s <= 7 * 86400:
        return "timeout_s must be > 0 and at most 604800"
    if task.max_attempts is not None and not 1 <= task.max_attempts <= 1000:
        return "max_attempts must be from 1 to 1000"
    if not -1000 <= task.priority <= MAINTENANCE_PRIORITY:
        return "priority must be from -1000 to 1000"
    for name in ("backoff_base_s", "backoff_max_s"):
        value = getattr(task, name)
        if value is not None and not 0 < value <= 7 * 86400:
            return f"{name} must be > 0 and at most 604800"
    if task.backoff_jitter is not None and not 0 <= task.backoff_jitter <= 1:
        return "backoff_jitter must be from 0 to 1"
    if task.backoff_base_s is not None and task.backoff_max_s is not None and task.backoff_max_s < task.backoff_base_s:
        return "backoff_max_s must be >= backoff_base_s"
    if isinstance(task.schedules, str) or not all(isinstance(c, str) for c in task.schedules):
        return "schedules must be a tuple of cron expressions"
    if task.schedules:
        from croniter import croniter  # only for tasks that have schedules

        for cron in task.schedules:
            if not croniter.is_valid(cron):
                return f"schedules: not a cron expression: {cron!r}"
    return None


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

    @classmethod
    def of(cls, tasks: Iterable[Task[Any]]) -> Registry:
        registry = cls()
        for task in tasks:
            registry.add(task)
        return registry

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
        **policy: Any,
    ) -> Callable[[Callable[[P, TaskContext], Awaitable[Any]]], Callable[[P, TaskContext], Awaitable[Any]]]:
        """`policy`: any other field of Task (priority, backoff_*, schedules, settings_model, ...)."""

        def deco(fn: Callable[[P, TaskContext], Awaitable[Any]]) -> Callable[[P, TaskContext], Awaitable[Any]]:
            self.add(Task(name, fn, payload_model, timeout_s, max_attempts, description or (fn.__doc__ or ""),
                          **policy))
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
