"""How far ahead the daemon claims: a pure function of the jobs' average duration (worker/runtime/claim_ahead.py)."""

from __future__ import annotations

import math

from worker.runtime.claim_ahead import AHEAD_MAX_BATCHES, AHEAD_WORK_MS, ahead_batches


def test_how_far_ahead_the_daemon_claims_follows_the_jobs_average_duration() -> None:
    assert ahead_batches(math.inf, 50.0) == 0  # nothing known yet
    assert ahead_batches(50.0, 50.0) == 0  # long jobs: only the free slots
    assert ahead_batches(0.0, 50.0) == AHEAD_MAX_BATCHES  # no-op jobs: as deep as allowed
    assert ahead_batches(AHEAD_WORK_MS / AHEAD_MAX_BATCHES, 50.0) == AHEAD_MAX_BATCHES
    assert ahead_batches(AHEAD_WORK_MS / 2, 50.0) == 2  # about AHEAD_WORK_MS of work held per slot
    assert ahead_batches(AHEAD_WORK_MS * 3, 50.0) == 1  # short jobs: one batch ahead
    assert ahead_batches(0.0, 0.0) == 0  # claim_ahead_below_ms = 0 turns it off
    assert ahead_batches(0.0, 50.0, long_running=4, slots=10) == AHEAD_MAX_BATCHES  # the other six keep cycling
    assert ahead_batches(0.0, 50.0, long_running=5, slots=10) == 0  # long jobs hold half the slots: none ahead
    assert ahead_batches(0.0, 50.0, long_running=1, slots=1) == 0  # the only slot is held by a long job
    assert ahead_batches(0.0, 50.0, long_running=1, slots=100) == AHEAD_MAX_BATCHES  # one sync among 100 slots
