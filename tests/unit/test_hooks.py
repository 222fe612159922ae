"""The batch hooks call the one-job hooks a subclass overrides, once per job, in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from worker.hooks import Hooks, MultiHooks
from worker.queue import Finished, Job


def test_batch_hooks_call_the_overridden_one_job_hooks_per_job() -> None:
    now = datetime.now(UTC)
    jobs = [Job(uuid.UUID(int=i), "noop", {}, 1, 5, 0, now) for i in range(3)]
    ends = [Finished(j.id, "noop", 1, "succeeded", "succeeded", now, now, 0) for j in jobs]
    seen: list[object] = []

    class Claims(Hooks):
        def job_claimed(self, job: Job) -> None:
            seen.append(job.id)

    class Ends(Hooks):
        def job_finished(self, finished: Finished) -> None:
            seen.append(finished.job_id)

    hooks = MultiHooks(Hooks(), Claims(), Ends())
    hooks.jobs_claimed(jobs)
    hooks.jobs_finished(ends)
    assert seen == [j.id for j in jobs] * 2
