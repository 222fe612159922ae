"""Where the daemon's next claim walks the claim index from (worker/runtime/walk.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from worker.jobs import Job
from worker.runtime.walk import FULL_WALK_EVERY_S, WalkFrom


def _jobs(*priorities: int) -> list[Job]:
    now = datetime.now(UTC)
    return [Job(uuid.UUID(int=i + 1), "noop", {}, 1, 5, p, now) for i, p in enumerate(priorities)]


def test_the_first_claim_walks_the_whole_index() -> None:
    assert WalkFrom().next(100.0) is None


def test_after_a_claim_that_took_all_it_asked_the_next_walks_from_the_first_job_of_its_lowest_priority() -> None:
    walk = WalkFrom()
    jobs = _jobs(9, 5, 5, 0, 0, 0)
    walk.claimed(jobs, 6, None, 100.0)
    assert walk.next(100.1) == jobs[3].id
    same = _jobs(0, 0)
    walk.claimed(same, 2, jobs[3].id, 100.1)
    assert walk.next(100.2) == same[0].id


def test_after_a_claim_that_took_fewer_than_it_asked_the_next_walks_the_whole_index() -> None:
    walk = WalkFrom()
    walk.claimed(_jobs(0, 0), 2, None, 100.0)
    walk.claimed(_jobs(0), 5, walk.next(100.1), 100.1)
    assert walk.next(100.2) is None
    walk.claimed([], 5, None, 100.2)
    assert walk.next(100.3) is None


def test_the_whole_index_is_walked_again_once_a_full_walk_is_due() -> None:
    walk = WalkFrom()
    walk.claimed(_jobs(0, 0), 2, None, 100.0)
    key = walk.next(100.0 + FULL_WALK_EVERY_S / 2)
    assert key is not None
    walk.claimed(_jobs(0, 0), 2, key, 100.0 + FULL_WALK_EVERY_S / 2)  # a walk from a key is no full walk
    assert walk.next(100.0 + FULL_WALK_EVERY_S) is None
    walk.claimed(_jobs(0, 0), 2, None, 100.0 + FULL_WALK_EVERY_S)
    assert walk.next(100.0 + FULL_WALK_EVERY_S + 0.1) is not None


def test_a_failed_claim_changes_nothing() -> None:
    walk = WalkFrom()
    jobs = _jobs(0, 0)
    walk.claimed(jobs, 2, None, 100.0)
    assert walk.next(100.1) == jobs[0].id  # the claim sent then failed: claimed() is never called
    assert walk.next(100.2) == jobs[0].id
