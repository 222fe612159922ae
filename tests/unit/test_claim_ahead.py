"""How far ahead the daemon claims: a pure function of the jobs' average duration (worker/runtime/claim_ahead.py)."""

from __future__ import annotations

import math

from worker.runtime.claim_ahead import AHEAD_MAX_JOBS, AHEAD_WORK_MS, ahead_batches, hold


def test_how_far_ahead_the_daemon_claims_follows_the_jobs_average_duration() -> None:
    assert ahead_batches(math.inf, 50.0) == 0  # nothing known yet
    assert ahead_batches(50.0, 50.0) == 0  # long jobs: only the free slots
    assert ahead_batches(AHEAD_WORK_MS / 2, 50.0) == 2  # about AHEAD_WORK_MS of work held per slot
    assert ahead_batches(AHEAD_WORK_MS * 3, 50.0) == 1  # short jobs: one batch ahead
    assert ahead_batches(AHEAD_WORK_MS / 40, 50.0, slots=10) == 40  # 400 jobs: under the cap, the work decides
    assert ahead_batches(0.0, 0.0) == 0  # claim_ahead_below_ms = 0 turns it off


def test_no_op_jobs_are_held_ahead_up_to_the_same_number_of_jobs_whatever_the_slot_count() -> None:
    for slots in (1, 2, 10, 100, 1000):
        batches = ahead_batches(0.0, 50.0, slots=slots)
        assert batches == max(1, AHEAD_MAX_JOBS // slots)
        assert batches * slots <= max(slots, AHEAD_MAX_JOBS)
    assert ahead_batches(AHEAD_WORK_MS / (AHEAD_MAX_JOBS // 10), 50.0, slots=10) == AHEAD_MAX_JOBS // 10
    assert ahead_batches(AHEAD_WORK_MS / 10_000, 50.0, slots=10) == AHEAD_MAX_JOBS // 10  # the cap holds


def test_long_jobs_holding_half_the_slots_stop_claiming_ahead() -> None:
    most = AHEAD_MAX_JOBS // 10
    assert ahead_batches(0.0, 50.0, long_running=4, slots=10) == most  # the other six keep cycling
    assert ahead_batches(0.0, 50.0, long_running=5, slots=10) == 0  # long jobs hold half the slots: none ahead
    assert ahead_batches(0.0, 50.0, long_running=1, slots=1) == 0  # the only slot is held by a long job
    assert ahead_batches(0.0, 50.0, long_running=1, slots=100) == AHEAD_MAX_JOBS // 100  # one sync among 100


def test_claimed_jobs_of_a_higher_priority_than_the_first_held_start_before_every_held_job() -> None:
    ready = {"a": 0, "b": 0}
    hold(ready, [("m", 1000), ("n", 5), ("c", 0)], lambda p: p)
    assert list(ready) == ["m", "n", "a", "b", "c"]
    hold(ready, [("d", 1000), ("e", 0)], lambda p: p)  # equal to the first held: behind, in claim order
    assert list(ready) == ["m", "n", "a", "b", "c", "d", "e"]


def test_claimed_jobs_join_the_end_when_nothing_is_held_or_none_outranks_the_first() -> None:
    ready: dict[str, int] = {}
    hold(ready, [("a", 3), ("b", 1)], lambda p: p)
    assert list(ready) == ["a", "b"]
    hold(ready, [("c", 3), ("d", 9)], lambda p: p)  # a claim's order is by priority: its first decides
    assert list(ready) == ["a", "b", "c", "d"]
    hold(ready, [], lambda p: p)
    assert list(ready) == ["a", "b", "c", "d"]
