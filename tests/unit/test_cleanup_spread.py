"""Cleanup's pacing (worker/builtin/cleanup.py `spread_pause_s`): a scheduled run spreads its deletes over its
window instead of deleting them all at the start of the slot, on a fake clock and a fake connection."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.unit.test_cleanup_duty_cycle import NOW, FakeClock, _ctx
from worker.builtin.cleanup import CleanupPayload, cleanup_run, key_ms, spread_pause_s
from worker.queue import NewJob

UNTIL = NOW + timedelta(seconds=60)  # a schedule every minute: the window is 80 % of it, 48 s
RETENTION_S = 60.0


def v7(ms: int) -> uuid.UUID:
    """A version-7 id carrying `ms`, as job_queue_uuidv7() makes them."""
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0x2 << 62) | 12345)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def pause(at_key: datetime, now: datetime, *, began_key: datetime | None = None, spread_s: float = 600.0,
          until: datetime = UNTIL) -> float:
    began_key = began_key or NOW - timedelta(seconds=72)
    return spread_pause_s(
        began_at=NOW, began_key_ms=ms(began_key), at_key_ms=ms(at_key), now=now, until=until, spread_s=spread_s,
        retention_s=RETENTION_S,
    )


def test_key_ms_is_the_time_a_version_7_id_carries_and_none_for_any_other_id() -> None:
    assert key_ms(v7(1_796_000_000_123)) == 1_796_000_000_123
    assert key_ms(uuid.UUID("01a25105-dad0-7298-a0a7-34df36bbfe08")) == 0x01A25105DAD0
    assert key_ms(uuid.uuid4()) is None and key_ms(uuid.UUID(int=7)) is None


def test_a_run_ahead_of_its_line_waits_until_the_line_reaches_the_key_it_stopped_at() -> None:
    # From 72 s before NOW to the cutoff at the window's end (NOW + 48 s - 60 s): 60 s of ids over 48 s. A
    # quarter of the way (15 s of ids) is due a quarter into the window, 12 s; one second in, it waits 11.
    at_key = NOW - timedelta(seconds=72 - 15)
    assert pause(at_key, NOW + timedelta(seconds=1)) == pytest.approx(11.0)


def test_a_run_behind_its_line_does_not_wait() -> None:
    at_key = NOW - timedelta(seconds=72 - 15)  # due 12 s into the window
    assert pause(at_key, NOW + timedelta(seconds=12)) == pytest.approx(0.0, abs=1e-6)
    assert pause(at_key, NOW + timedelta(seconds=30)) == 0.0


def test_the_window_is_the_shorter_of_the_spread_and_eighty_percent_of_the_time_to_the_next_slot() -> None:
    half = NOW - timedelta(seconds=72 - 30)  # half of the ids: due half-way through the window
    assert pause(half, NOW) == pytest.approx(24.0)  # 80 % of 60 s
    # spread over 10 s: from 72 s before NOW to the cutoff at NOW + 10 s, 22 s of ids; half of them at 5 s
    assert pause(NOW - timedelta(seconds=72 - 11), NOW, spread_s=10.0) == pytest.approx(5.0)
    # a daily slot: the spread's 600 s, not 80 % of a day
    day = NOW + timedelta(days=1)
    assert pause(NOW - timedelta(seconds=72) + timedelta(seconds=(600 + 12) / 2), NOW, until=day,
                 spread_s=600.0) == pytest.approx(300.0)


def test_ids_older_than_one_slot_before_the_cutoff_count_as_behind_the_line() -> None:
    # The first piece stopped at a failed job kept for days: the line starts a slot (60 s) before the cutoff
    # at NOW, 120 s before NOW, and runs to the cutoff at the window's end, 12 s before NOW: 108 s over 48 s.
    days_ago = NOW - timedelta(days=3)
    assert pause(NOW - timedelta(days=2), NOW + timedelta(seconds=1), began_key=days_ago) == 0.0
    assert pause(NOW - timedelta(seconds=120 - 54), NOW, began_key=days_ago) == pytest.approx(24.0)


def test_no_pacing_when_it_is_off_or_the_ids_carry_no_time_or_there_is_nothing_ahead() -> None:
    at_key = NOW - timedelta(seconds=40)
    assert pause(at_key, NOW, spread_s=0.0) == 0.0
    assert spread_pause_s(began_at=NOW, began_key_ms=None, at_key_ms=ms(at_key), now=NOW, until=UNTIL,
                          spread_s=600.0, retention_s=RETENTION_S) == 0.0
    assert spread_pause_s(began_at=NOW, began_key_ms=ms(at_key), at_key_ms=None, now=NOW, until=UNTIL,
                          spread_s=600.0, retention_s=RETENTION_S) == 0.0
    # the run began at keys past the window's cutoff (the ids' clock ahead of this one's): nothing to pace
    assert pause(NOW, NOW, began_key=NOW - timedelta(seconds=1)) == 0.0
    # its slot already passed: no window
    assert pause(at_key, NOW, until=NOW - timedelta(seconds=1)) == 0.0


def test_it_never_waits_past_the_windows_end() -> None:
    far = NOW + timedelta(hours=1)  # a key far past the cutoff (an id whose time is wrong)
    assert pause(far, NOW + timedelta(seconds=10)) == pytest.approx(38.0)  # to NOW + 48 s, no further


class KeyedConn:
    """Answers cleanup_batch with version-7 ids: each batch deletes `per_batch` jobs, takes `took_s` on the
    clock, and moves the key on by `step_ms` from `first_ms`."""

    def __init__(self, clock: FakeClock, first_ms: int, step_ms: int, batches: int, per_batch: int = 10,
                 took_s: float = 0.01) -> None:
        self.clock, self.key, self.step_ms, self.left = clock, first_ms, step_ms, batches
        self.per_batch, self.took_s = per_batch, took_s

    async def fetchrow(self, _sql: str, *args: Any) -> dict[str, Any]:
        self.clock.now += self.took_s
        if self.left == 0:
            return {"jobs": 0, "succeeded": 0, "runs": 0, "last_id": None}
        self.left -= 1
        self.key += self.step_ms
        n = self.per_batch
        return {"jobs": n, "succeeded": n, "runs": n, "last_id": v7(self.key)}


async def _keeping_up() -> float:
    return 0.0


async def _run(conn: KeyedConn, clock: FakeClock, **overrides: Any) -> list[tuple[datetime, CleanupPayload]]:
    """A whole run: its first piece at NOW, each next one at the time it was due (clock and wall time advanced
    together); returns each piece's start and payload."""
    ctx = _ctx(conn, claim_ahead_below_ms=50.0, cleanup_batch_size=10, retention_succeeded_days=RETENTION_S / 86400,
               retention_failed_days=1.0, **overrides)
    pieces: list[tuple[datetime, CleanupPayload]] = []
    payload, at = CleanupPayload(until=UNTIL), NOW
    for _ in range(1000):
        enqueued: list[NewJob] = []

        async def enqueue(job: NewJob, into: list[NewJob] = enqueued) -> None:
            into.append(job)

        pieces.append((at, payload))
        start = clock.now
        await cleanup_run(payload, ctx, now=at, clock=clock, enqueue=enqueue, waited_s=_keeping_up)
        if not enqueued:
            return pieces
        [following] = enqueued
        due = following.run_at or at + timedelta(seconds=clock.now - start)
        clock.now = start + (due - at).total_seconds()
        payload, at = CleanupPayload.model_validate(following.payload), due
    raise AssertionError("the run did not end")


async def test_a_run_that_would_delete_a_minutes_jobs_in_a_second_spreads_them_over_its_window() -> None:
    # 120 pieces of 25 ms (1 s of work in all) over the 60 s of ids from 72 s before NOW to 12 s before it
    clock = FakeClock()
    conn = KeyedConn(clock, first_ms=ms(NOW - timedelta(seconds=72)), step_ms=250, batches=240, took_s=0.0125)
    pieces = await _run(conn, clock)
    assert len(pieces) == 121  # the last one finds nothing left
    starts = [(at - NOW).total_seconds() for at, _ in pieces]
    assert starts[-1] == pytest.approx(48.0, abs=0.5)  # the window: 80 % of the minute
    # evenly: each quarter of the window starts about a quarter of the pieces
    quarters = [sum(1 for s in starts if q * 12 <= s < (q + 1) * 12) for q in range(4)]
    assert all(28 <= n <= 32 for n in quarters), quarters
    first = pieces[1][1]
    assert first.began_at == NOW and first.began_key_ms == ms(NOW - timedelta(seconds=72)) + 500


async def test_with_pacing_off_the_pieces_follow_each_other_at_once() -> None:
    clock = FakeClock()
    conn = KeyedConn(clock, first_ms=ms(NOW - timedelta(seconds=72)), step_ms=250, batches=240, took_s=0.0125)
    pieces = await _run(conn, clock, cleanup_spread_s=0.0)
    assert len(pieces) == 121
    assert (pieces[-1][0] - NOW).total_seconds() == pytest.approx(3.0)  # 120 pieces of 25 ms, then the last


async def test_a_run_that_falls_behind_its_line_runs_unpaced_and_stops_at_its_slot() -> None:
    # Each piece takes 0.5 s for 0.5 s of ids: slower than the window's 60 s of ids in 48 s, never ahead of it
    clock = FakeClock()
    conn = KeyedConn(clock, first_ms=ms(NOW - timedelta(seconds=72)), step_ms=500, batches=200, took_s=0.5)
    pieces = await _run(conn, clock)
    gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(pieces)]
    assert all(g == pytest.approx(0.5) for g in gaps)  # each piece due as soon as the one before it ended
    assert (pieces[-1][0] - NOW).total_seconds() == pytest.approx(59.5)  # the last one ends at the slot
