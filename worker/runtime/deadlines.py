"""Job timeouts for the daemon: one timer for every running job instead of one per job.

Each job gets a deadline when it starts. One timer is armed for the earliest deadline that may still be
pending; when it fires, the running jobs (at most `concurrency` of them) are looked over, those past their
deadline are stopped, and the timer is armed again for the earliest of the rest. A job that ends in time costs
a comparison and no timer handle of its own (tests/unit/test_deadlines.py).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable

from worker.runtime.leases import RunningJob

__all__ = ["Deadlines"]


class Deadlines:
    def __init__(
        self, running: Callable[[], Iterable[RunningJob]], expire: Callable[[RunningJob], None]
    ) -> None:
        self.running = running
        """The jobs to look over when the timer fires."""
        self.expire = expire
        """Called for each running job past its deadline."""
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, rj: RunningJob, timeout_s: float) -> None:
        """Give `rj` (which has just started) a deadline `timeout_s` from now."""
        loop = self._loop
        if loop is None or loop.is_closed():  # get_running_loop() makes a system call (getpid): once per loop
            loop = self._loop = asyncio.get_running_loop()
        rj.deadline = loop.time() + timeout_s
        if rj.deadline < self._at:
            self._arm(loop, rj.deadline)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._at = math.inf

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = at
        self._timer = loop.call_at(at, self._due, loop)

    def _due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._at = math.inf
        now = loop.time()
        earliest = math.inf
        for rj in list(self.running()):
            if rj.deadline <= now:
                self.expire(rj)
            elif rj.deadline < earliest:
                earliest = rj.deadline
        if earliest < math.inf:
            self._arm(loop, earliest)
