"""The daemon's job timeouts: one timer for every running job (worker/runtime/deadlines.py).

The tests run on virtual time (tests/support/virtual_time.py): a sleep moves the loop's clock exactly, so each
deadline is checked on both sides of its instant whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from tests.support.virtual_time import run_in_virtual_time
from worker.queue import Job
from worker.runtime.deadlines import Deadlines
from worker.runtime.leases import RunningJob


def _rj() -> RunningJob:
    return RunningJob(Job(uuid.uuid4(), "t", {}, 1, 3, 0, datetime.now(UTC)))


async def _until(t: float) -> None:
    """Sleep until the loop's clock reads `t` (virtual seconds since the loop started)."""
    await asyncio.sleep(t - asyncio.get_running_loop().time())


def test_each_job_past_its_deadline_is_expired_once_and_the_others_are_left_alone() -> None:
    async def main() -> None:
        running: dict[uuid.UUID, RunningJob] = {}
        expired: list[RunningJob] = []

        def expire(rj: RunningJob) -> None:
            expired.append(rj)
            running.pop(rj.job.id)  # as the daemon's job task does once it is cancelled

        deadlines = Deadlines(running.values, expire)
        long, short, shorter, done_early = _rj(), _rj(), _rj(), _rj()
        for rj, timeout_s in ((long, 30.0), (short, 8.0), (shorter, 4.0), (done_early, 2.0)):
            running[rj.job.id] = rj
            deadlines.watch(rj, timeout_s)
        running.pop(done_early.job.id)  # finished in time: nothing happens to it
        await _until(3.9)
        assert expired == []
        await _until(4.1)
        assert expired == [shorter]
        await _until(7.9)
        assert expired == [shorter]
        await _until(8.1)
        assert expired == [shorter, short]
        assert running == {long.job.id: long}
        await _until(29.9)
        assert expired == [shorter, short]
        await _until(30.1)
        assert expired == [shorter, short, long] and running == {}
        deadlines.close()

    run_in_virtual_time(main)


def test_a_job_started_later_with_an_earlier_deadline_re_arms_the_timer() -> None:
    async def main() -> None:
        running: dict[uuid.UUID, RunningJob] = {}
        expired: list[RunningJob] = []
        deadlines = Deadlines(running.values, expired.append)
        slow, quick = _rj(), _rj()
        running[slow.job.id] = slow
        deadlines.watch(slow, 30.0)
        await _until(1.0)
        running[quick.job.id] = quick
        deadlines.watch(quick, 3.0)
        await _until(3.9)
        assert expired == []
        await _until(4.1)
        assert expired == [quick]
        deadlines.close()

    run_in_virtual_time(main)


def test_closing_stops_the_timer() -> None:
    async def main() -> None:
        running: dict[uuid.UUID, RunningJob] = {}
        expired: list[RunningJob] = []
        deadlines = Deadlines(running.values, expired.append)
        rj = _rj()
        running[rj.job.id] = rj
        deadlines.watch(rj, 2.0)
        deadlines.close()
        await _until(60.0)
        assert expired == []

    run_in_virtual_time(main)


def test_the_virtual_clock_fires_timers_in_order_without_waiting() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        for at in (5.0, 1.0, 3600.0):
            loop.call_at(at, lambda: fired.append(loop.time()))
        await asyncio.sleep(3601.0)
        return fired

    assert run_in_virtual_time(main) == [1.0, 5.0, 3600.0]
