"""Where the daemon's next claim starts its walk of the claim index (migration 016).

Between two vacuums of job_queue the head of job_queue_claim_idx holds an entry for every job claimed since the
last one, and a claim that walks the index from its head steps over all of them. A claim that took all it asked
took every claimable due job before the first job of its lowest priority, so the next claim may walk that
priority from that job's key on (the priorities above and below are walked whole). Jobs that can appear before
the key since then (an insert whose run_at is already past, a job handed back, a row another claim held locked
and let go) are what the full walk finds: at least every FULL_WALK_EVERY_S, and after any claim that took
fewer than it asked (tests/unit/test_walk.py, tests/test_claim_walk.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from worker.jobs import Job

__all__ = ["FULL_WALK_EVERY_S", "WalkFrom"]

FULL_WALK_EVERY_S = 1.0


class WalkFrom:
    """The key (a job id) the next claim walks from, or None for a walk from the index's head."""

    def __init__(self, full_walk_every_s: float = FULL_WALK_EVERY_S) -> None:
        self.full_walk_every_s = full_walk_every_s
        self._from: uuid.UUID | None = None
        self._full_walk_at: float | None = None  # when the last claim that walked the whole index was sent

    def next(self, now: float) -> uuid.UUID | None:
        """The job to walk from in a claim sent at `now` (monotonic seconds); None: the whole index."""
        if self._full_walk_at is None or now - self._full_walk_at >= self.full_walk_every_s:
            return None
        return self._from

    def claimed(self, jobs: Sequence[Job], asked: int, walked_from: uuid.UUID | None, sent: float) -> None:
        """After a claim sent at `sent` that walked from `walked_from`, asked for `asked` jobs and took `jobs` (in
        claim order: priority descending, then run_at and id): the next walks from the first job of the lowest
        priority when it took all it asked, else from the head."""
        if walked_from is None:
            self._full_walk_at = sent
        if not jobs or len(jobs) < asked:
            self._from = None
            return
        lowest = jobs[-1].priority
        first = len(jobs) - 1
        while first > 0 and jobs[first - 1].priority == lowest:
            first -= 1
        self._from = jobs[first].id
