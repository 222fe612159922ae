"""Run one claimed job's handler and turn what happened into a `Finished` record.

Pure with respect to the database: it calls the handler with a validated payload under the task's timeout and
classifies the end (success, retry with backoff, permanent failure). Cancellation from outside (shutdown, lost
lease) propagates to the caller, which decides what to record.

`success` and `failure` build every `Finished` record the daemon, /api/jobs/run and `worker jobs run-now` write,
so they are where a configured secret is removed from the error and the result (worker.redaction.stored();
tests/test_security_stored_secrets.py).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from worker import redaction
from worker.backoff import BackoffPolicy, next_retry_at
from worker.errors import InvalidInput, InvalidPayload, PermanentJobError
from worker.jsonvalues import dumps_bounded
from worker.queue import Finished, Job
from worker.tasks import Task, TaskContext

__all__ = ["execute", "failure", "run_handler", "success"]

MAX_ERROR_CHARS = 4000


def _error_text(exc: BaseException) -> str:
    """The error as recorded; `failure` cuts it to MAX_ERROR_CHARS once secrets are removed."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def success(job: Job, result: Any, started_mono: float, *, result_json: str | None = None) -> Finished:
    """`result_json`: the result's JSON text if the caller has it (json.dumps(..., ensure_ascii=False))."""
    now = datetime.now(UTC)
    redactor = redaction.stored()
    if redactor.secrets and result is not None:
        result = redactor.redact_json(result, result_json)
    # positional: one is built per attempt (job_id, task_type, attempt, status, outcome, started_at, finished_at,
    # duration_ms, result)
    return Finished(
        job.id, job.task_type, job.attempt, "succeeded", "succeeded", job.started_at, now,
        max(0, int((time.monotonic() - started_mono) * 1000)), result,
    )


def failure(
    job: Job, error: str, started_mono: float, policy: BackoffPolicy, *, permanent: bool
) -> Finished:
    now = datetime.now(UTC)
    duration_ms = max(0, int((time.monotonic() - started_mono) * 1000))
    redactor = redaction.stored()
    if redactor.secrets:  # before the cut, so that no secret is cut in two and kept in part
        error = redactor.redact_text(error[: MAX_ERROR_CHARS + redactor.longest])
    if permanent or job.attempt >= job.max_attempts:
        return Finished(
            job_id=job.id, task_type=job.task_type, attempt=job.attempt, status="failed", outcome="failed",
            started_at=job.started_at, finished_at=now, duration_ms=duration_ms, error=error[:MAX_ERROR_CHARS],
        )
    return Finished(
        job_id=job.id, task_type=job.task_type, attempt=job.attempt, status="pending", outcome="retry",
        started_at=job.started_at, finished_at=now, duration_ms=duration_ms, error=error[:MAX_ERROR_CHARS],
        retry_at=next_retry_at(job.attempt, now, policy),
    )


class _Deadline:
    """What `asyncio.timeout` does for one handler call, with one timer handle and no context manager (it runs
    for every job, and the general form cost twice as much): at the deadline, cancel the task and remember
    why, so that the cancellation is told apart from one that came from outside (shutdown, lost lease)."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.expired = False

    def fire(self) -> None:
        self.expired = True
        self.task.cancel()


async def execute(
    task: Task[Any], job: Job, ctx: TaskContext, *, timeout_s: float | None, policy: BackoffPolicy
) -> Finished:
    """Run the handler. Returns the attempt's end; lets outside cancellation through. `timeout_s` None: the
    caller enforces the timeout itself (the daemon: worker/runtime/deadlines.py)."""
    if timeout_s is None:
        return await run_handler(task, job, ctx, policy)
    started = time.monotonic()
    current = asyncio.current_task()
    assert current is not None, "execute() runs inside a task"
    cancelling = current.cancelling()
    deadline = _Deadline(current)
    timer = asyncio.get_running_loop().call_later(timeout_s, deadline.fire)
    try:
        finished = await run_handler(task, job, ctx, policy)
    except asyncio.CancelledError:
        timer.cancel()
        if deadline.expired and current.uncancel() <= cancelling:
            return failure(job, f"timed out after {timeout_s:g}s", started, policy, permanent=False)
        raise
    timer.cancel()
    if deadline.expired:  # the handler turned the timeout's cancellation into a return or an error of its own
        current.uncancel()
    return finished


async def run_handler(task: Task[Any], job: Job, ctx: TaskContext, policy: BackoffPolicy) -> Finished:
    """`execute` without a timeout (the caller enforces it: the daemon's worker/runtime/deadlines.py), in one
    coroutine: the payload parsed, the handler called, its end classified; cancellation goes through."""
    started = time.monotonic()
    try:
        payload = task.parse(job.payload)
    except InvalidPayload as exc:
        return failure(job, str(exc), started, policy, permanent=True)
    try:
        result = await task.handler(payload, ctx)
    except PermanentJobError as exc:
        return failure(job, _error_text(exc), started, policy, permanent=True)
    except Exception as exc:
        return failure(job, _error_text(exc), started, policy, permanent=False)
    return _succeeded(job, result, started, policy)


def _succeeded(job: Job, result: Any, started: float, policy: BackoffPolicy) -> Finished:
    text = None
    if result is not None:
        try:
            text = dumps_bounded(result, what="result")
        except InvalidInput as exc:  # stored, it would poison every reader of the row (tests/test_poison_rows.py)
            return failure(job, str(exc), started, policy, permanent=True)
    return success(job, result, started, result_json=text)
