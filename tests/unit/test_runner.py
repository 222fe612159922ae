"""The runner: one handler call under its timeout, turned into the attempt's end (no database involved). The
timeout tests run on virtual time (tests/support/virtual_time.py): what they prove does not hang on the machine's
promptness."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.virtual_time import run_in_virtual_time
from worker.backoff import BackoffPolicy
from worker.errors import PermanentJobError
from worker.queue import Job
from worker.runtime.runner import execute
from worker.tasks import EmptyPayload, Task, TaskContext

POLICY = BackoffPolicy(base_s=1.0, max_s=10.0, jitter=0.0)


def _job(attempt: int = 1, max_attempts: int = 3) -> Job:
    return Job(
        id=uuid.uuid4(), task_type="t", payload={}, attempt=attempt, max_attempts=max_attempts, priority=0,
        started_at=datetime.now(UTC),
    )


async def _run(handler: Any, timeout_s: float = 5.0, job: Job | None = None) -> Any:
    job = job or _job()
    task = Task("t", handler, EmptyPayload)
    return await execute(task, job, TaskContext(job=job, worker_id="w"), timeout_s=timeout_s, policy=POLICY)


def test_a_handler_past_its_timeout_is_stopped_and_the_attempt_retried() -> None:
    async def main() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def slow(_p: Any, _c: TaskContext) -> None:
            try:
                await asyncio.sleep(30)
            finally:
                stopped.set()

        finished = await _run(slow, timeout_s=5.0)
        assert stopped.is_set() and loop.time() == pytest.approx(5.0)  # stopped at its timeout, not before
        assert (finished.outcome, finished.error) == ("retry", "timed out after 5s")
        assert finished.retry_at is not None
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0  # the timeout's cancellation is not left behind

    run_in_virtual_time(main)


def test_the_last_attempt_past_its_timeout_fails_the_job() -> None:
    async def main() -> None:
        async def slow(_p: Any, _c: TaskContext) -> None:
            await asyncio.sleep(30)

        finished = await _run(slow, timeout_s=2.0, job=_job(attempt=3, max_attempts=3))
        assert (finished.status, finished.error) == ("failed", "timed out after 2s")

    run_in_virtual_time(main)


async def test_a_timeout_error_raised_by_the_handler_itself_is_reported_as_its_own() -> None:
    async def raises(_p: Any, _c: TaskContext) -> None:
        raise TimeoutError("upstream took too long")

    finished = await _run(raises)
    assert (finished.outcome, finished.error) == ("retry", "TimeoutError: upstream took too long")


async def test_a_cancellation_from_outside_goes_through_to_the_caller() -> None:
    started = asyncio.Event()

    async def waits(_p: Any, _c: TaskContext) -> None:
        started.set()
        await asyncio.sleep(30)

    runner = asyncio.create_task(_run(waits, timeout_s=5.0))
    await started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


def test_a_handler_that_swallows_the_timeout_and_returns_has_its_result_recorded() -> None:
    async def main() -> None:
        async def stubborn(_p: Any, _c: TaskContext) -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                return "finished anyway"
            return "never"

        finished = await _run(stubborn, timeout_s=2.0)
        assert (finished.outcome, finished.result) == ("succeeded", "finished anyway")
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0
        await asyncio.sleep(60)  # and the task is not cancelled later by a stray timer

    run_in_virtual_time(main)


def test_a_permanent_error_fails_without_retry_and_a_quick_handler_keeps_no_timer() -> None:
    async def main() -> None:
        async def bad(_p: Any, _c: TaskContext) -> None:
            raise PermanentJobError("bad data")

        finished = await _run(bad, timeout_s=2.0)
        assert (finished.status, finished.error) == ("failed", "PermanentJobError: bad data")

        async def quick(_p: Any, _c: TaskContext) -> int:
            return 7

        finished = await _run(quick, timeout_s=2.0)
        assert finished.result == 7
        await asyncio.sleep(60)  # past the deadline: the timer was cancelled, nothing cancels this task

    run_in_virtual_time(main)
