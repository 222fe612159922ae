"""Claimed rows become Jobs: the same frozen dataclass instances as Job(...) builds."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from worker.queue import Job, _claimed_jobs


def test_claimed_jobs_are_plain_frozen_jobs() -> None:
    rows = [
        {"id": uuid.UUID(int=i), "task_type": "noop", "payload": {"i": i}, "attempts": i, "max_attempts": 5,
         "priority": -i, "started_epoch": 1_800_000_000.25}
        for i in (1, 2)
    ]
    jobs = _claimed_jobs(rows)
    started = datetime.fromtimestamp(1_800_000_000.25, UTC)
    assert jobs == [Job(uuid.UUID(int=i), "noop", {"i": i}, i, 5, -i, started) for i in (1, 2)]
    assert all(type(job) is Job for job in jobs)
    assert jobs[0].started_at is jobs[1].started_at  # one datetime per claim
    with pytest.raises(dataclasses.FrozenInstanceError):
        jobs[0].attempt = 9  # type: ignore[misc]
    assert repr(jobs[0]).startswith("Job(id=UUID(")
    assert dataclasses.replace(jobs[0], attempt=3).attempt == 3


def test_a_job_context_is_a_plain_task_context() -> None:
    from worker.tasks import TaskContext, job_context

    job = Job(uuid.UUID(int=1), "noop", {}, 1, 5, 0, datetime.now(UTC))
    resources: dict[str, object] = {"pool": None}
    ctx = job_context(job, "w-1", resources)
    assert type(ctx) is TaskContext
    assert ctx == TaskContext(job, "w-1", resources)
    assert ctx.job is job and ctx.worker_id == "w-1" and ctx.resources is resources
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.worker_id = "w-2"  # type: ignore[misc]


def test_a_new_job_is_a_plain_frozen_new_job() -> None:
    from worker.queue import NewJob

    a, b = NewJob("noop"), NewJob("noop")
    assert type(a) is NewJob and a == b
    assert a.payload == {} and a.payload is not b.payload  # a new {} for each job, as default_factory=dict made
    assert (a.run_at, a.priority, a.max_attempts, a.dedupe_key) == (None, 0, 5, None)
    at = datetime.now(UTC)
    full = NewJob("other", {"x": 1}, at, 3, 2, "k")
    assert full == NewJob(task_type="other", payload={"x": 1}, run_at=at, priority=3, max_attempts=2, dedupe_key="k")
    assert (full.payload, full.run_at, full.priority, full.max_attempts, full.dedupe_key) == ({"x": 1}, at, 3, 2, "k")
    assert NewJob("noop", None).payload is None  # type: ignore[arg-type]  # refused by its check, as before
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.priority = 9  # type: ignore[misc]
    assert repr(a) == "NewJob(task_type='noop', payload={}, run_at=None, priority=0, max_attempts=5, dedupe_key=None)"
    assert dataclasses.replace(full, priority=-1) == NewJob("other", {"x": 1}, at, -1, 2, "k")
