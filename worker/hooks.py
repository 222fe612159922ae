"""Observers of job life-cycle events (metrics, Sentry). The daemon calls them; they never raise into it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.queue import Finished, Job

__all__ = ["Hooks", "MultiHooks"]


class Hooks:
    """No-op base: subclass and override what you need.

    The daemon reports jobs in batches (`jobs_claimed`: the jobs one claim took; `jobs_finished`: the attempts
    one completion flush recorded); by default those call the one-job hooks for each job, so a subclass may
    override either form. Override the batch form where per-job work can be shared (metrics: one counter
    increment per task type and batch)."""

    def job_claimed(self, job: Job) -> None:
        return None

    def job_finished(self, finished: Finished) -> None:
        return None

    def jobs_claimed(self, jobs: Sequence[Job]) -> None:
        if type(self).job_claimed is Hooks.job_claimed:  # not overridden: nothing to call per job
            return
        for job in jobs:
            self.job_claimed(job)

    def jobs_finished(self, batch: Sequence[Finished]) -> None:
        if type(self).job_finished is Hooks.job_finished:
            return
        for finished in batch:
            self.job_finished(finished)

    def lease_recovered(self, row: Mapping[str, Any]) -> None:
        return None

    def listener_reconnected(self) -> None:
        return None


class MultiHooks(Hooks):
    def __init__(self, *hooks: Hooks) -> None:
        self.hooks = list(hooks)

    def job_claimed(self, job: Job) -> None:
        for h in self.hooks:
            h.job_claimed(job)

    def job_finished(self, finished: Finished) -> None:
        for h in self.hooks:
            h.job_finished(finished)

    def jobs_claimed(self, jobs: Sequence[Job]) -> None:
        for h in self.hooks:
            h.jobs_claimed(jobs)

    def jobs_finished(self, batch: Sequence[Finished]) -> None:
        for h in self.hooks:
            h.jobs_finished(batch)

    def lease_recovered(self, row: Mapping[str, Any]) -> None:
        for h in self.hooks:
            h.lease_recovered(row)

    def listener_reconnected(self) -> None:
        for h in self.hooks:
            h.listener_reconnected()
