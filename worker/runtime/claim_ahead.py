"""How far ahead of its free slots the daemon claims: a pure function of the jobs' recent durations.

A claim takes a round trip; jobs that end before it comes back leave slots idle. So while jobs are short the
daemon claims more than its free slots (the jobs held ahead are leased and heartbeated like running ones, and
handed back at once on stop), and the shorter the jobs, the more batches ahead, bounded so that what one
replica holds stays a few milliseconds of work and one claim statement takes at most AHEAD_MAX_JOBS jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

__all__ = ["AHEAD_MAX_JOBS", "AHEAD_WORK_MS", "ahead_batches", "hold"]

K = TypeVar("K", bound=Hashable)
H = TypeVar("H")

AHEAD_MAX_JOBS = 1000
AHEAD_WORK_MS = 5.0


def ahead_batches(avg_job_ms: float, below_ms: float, *, long_running: int = 0, slots: int = 1) -> int:
    """Batches (of `slots` jobs) to hold claimed ahead of the free slots, from the jobs' average duration: none
    for jobs of `below_ms` or more; one for short jobs; for shorter ones as many as keep about AHEAD_WORK_MS of
    work per slot (jobs other replicas cannot take meanwhile), and never more than AHEAD_MAX_JOBS jobs ahead
    in all, whatever the slot count: every claim walks the claim index's head, so under a backlog the batch,
    not the slot count, decides how often that walk is paid. None either while jobs that have already run
    `below_ms` hold half of the `slots` or more (the average only learns of a long job when it ends, and jobs
    held ahead would wait behind them); fewer long jobs leave the other slots cycling, so one long job (a
    sync, a cleanup) does not slow a backlog of short ones (tests/unit/test_claim_ahead.py)."""
    slots = max(1, slots)
    if avg_job_ms >= below_ms or 2 * long_running >= slots:
        return 0
    most = max(1, AHEAD_MAX_JOBS // slots)
    if avg_job_ms * most <= AHEAD_WORK_MS:
        return most
    return max(1, min(most, int(AHEAD_WORK_MS / avg_job_ms)))


def hold(ready: dict[K, H], claimed: Sequence[tuple[K, H]], priority: Callable[[H], int]) -> None:
    """Add one claim's jobs (id, held job), in the claim's order (priority first), to `ready`, the jobs held
    ahead in the order they will start. Those of a higher priority than the first job held go before every
    held job, not behind up to AHEAD_MAX_JOBS of them: a maintenance piece claimed under a backlog starts at
    the next free slot (tests/unit/test_claim_ahead.py, tests/test_daemon.py)."""
    if ready and claimed:
        top = priority(next(iter(ready.values())))
        first = 0
        while first < len(claimed) and priority(claimed[first][1]) > top:
            first += 1
        if first:
            held = list(ready.items())
            ready.clear()
            ready.update(claimed[:first])
            ready.update(held)
            ready.update(claimed[first:])
            return
    ready.update(claimed)
