"""The daemon's job timeouts: one timer for every running job (worker/runtime/deadlines.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from worker.queue import Job
from worker.runtime.deadlines import Deadlines
from worker.runtime.leases import RunningJob


def _rj() -> RunningJob:
    return RunningJob(Job(uuid.uuid4(), "t", {}, 1, 3, 0, datetime.now(UTC)))


async def test_each_job_past_its_deadline_is_expired_once_and_the_others_are_left_alone() -> None:
    running: dict[uuid.UUID, RunningJob] = {}
    expired: list[RunningJob] = []

    def expire(rj: RunningJob) -> None:
        expired.append(rj)
        running.pop(rj.job.id)  # as the daemon's job task does once it is cancelled

    deadlines = Deadlines(running.values, expire)
    long, short, shorter, done_early = _rj(), _rj(), _rj(), _rj()
    for rj, timeout_s in ((long, 30.0), (short, 0.08), (shorter, 0.04), (done_early, 0.02)):
        running[rj.job.id] = rj
        deadlines.watch(rj, timeout_s)
    running.pop(done_early.job.id)  # finished in time: nothing happens to it
    await asyncio.sleep(0.06)
    assert expired == [shorter]
    await asyncio.sleep(0.06)
    assert expired == [shorter, short]
    assert running == {long.job.id: long}
    deadlines.close()


async def test_a_job_started_later_with_an_earlier_deadline_re_arms_the_timer() -> None:
    running: dict[uuid.UUID, RunningJob] = {}
    expired: list[RunningJob] = []
    deadlines = Deadlines(running.values, expired.append)
    slow, quick = _rj(), _rj()
    running[slow.job.id] = slow
    deadlines.watch(slow, 30.0)
    running[quick.job.id] = quick
    deadlines.watch(quick, 0.03)
    await asyncio.sleep(0.08)
    assert expired == [quick]
    deadlines.close()


async def test_closing_stops_the_timer() -> None:
    running: dict[uuid.UUID, RunningJob] = {}
    expired: list[RunningJob] = []
    deadlines = Deadlines(running.values, expired.append)
    rj = _rj()
    running[rj.job.id] = rj
    deadlines.watch(rj, 0.02)
    deadlines.close()
    await asyncio.sleep(0.05)
    assert expired == []
