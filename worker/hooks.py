"""Observers of job life-cycle events (metrics, Sentry). The daemon calls them; they never raise into it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.queue import Finished, Job

__all__ = ["Hooks", "MultiHooks"]


class Hooks:
    """No-op base: subclass and override what you need."""

    def job_claimed(self, job: Job) -> None:
        return None

    def job_finished(self, finished: Finished) -> None:
        return None

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

    def lease_recovered(self, row: Mapping[str, Any]) -> None:
        for h in self.hooks:
            h.lease_recovered(row)

    def listener_reconnected(self) -> None:
        for h in self.hooks:
            h.listener_reconnected()
