"""A running job's progress, as its handler reports it: `ctx.progress(done, total, phase)` (worker/tasks.py).

The report is stored on the job row (`job_queue.progress`, migration 011) as
`{"done": int, "total": int | null, "phase": str | null, "at": ISO time}`, and shown by `worker jobs show`,
`worker jobs list`, the admin page (a progress bar) and `/metrics`.

Invariants (tests/test_progress.py):
* `progress()` never blocks and never raises for a database problem: the write runs in a background task,
  bounded by WRITE_TIMEOUT_S; a failed write is logged (`job.progress_write_failed`) and the job goes on.
* At most one write per INTERVAL_S per attempt: reports in between replace each other, and the latest one is
  written when the interval is up (so the last report before a pause is never lost).
* A write only lands on the row while this worker holds this attempt's lease (sql/queries/progress.sql
  `set_progress`): a late write never touches a finished, recovered or re-claimed job.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from worker import db
from worker.errors import InvalidInput
from worker.sql import queries

__all__ = ["INTERVAL_S", "WRITE_TIMEOUT_S", "ProgressReporter", "attach_progress", "check_report", "render"]

log = structlog.get_logger("worker.progress")
_Q = queries("progress")
INTERVAL_S = 1.0
"""Least time between two writes of one attempt's progress."""
WRITE_TIMEOUT_S = 5.0
"""A progress write (connection and statement) that takes longer is abandoned and logged."""
MAX_PHASE = 64
_background: set[asyncio.Task[None]] = set()
"""Flushes in flight (a reference keeps each task alive until it ends)."""


def check_report(done: int, total: int | None, phase: str | None) -> dict[str, Any]:
    """The stored form of one report; InvalidInput naming the problem for a bad one."""
    if isinstance(done, bool) or not isinstance(done, int) or done < 0:
        raise InvalidInput(f"progress: done must be an integer >= 0, not {done!r}")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise InvalidInput(f"progress: total must be an integer >= 0 or None, not {total!r}")
    if phase is not None and (not isinstance(phase, str) or not 1 <= len(phase) <= MAX_PHASE):
        raise InvalidInput(f"progress: phase must be a string of 1 to {MAX_PHASE} characters or None")
    return {"done": done, "total": total, "phase": phase, "at": datetime.now(UTC).isoformat()}


class ProgressReporter:
    """One attempt's progress; created by TaskContext on its first report. Without a pool (a handler called
    outside the daemon) the reports are kept in `last` only."""

    def __init__(
        self,
        pool: Any,
        job_id: uuid.UUID,
        worker_id: str,
        attempt: int,
        *,
        interval_s: float = INTERVAL_S,
        timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        self.pool = pool
        self.job_id = job_id
        self.worker_id = worker_id
        self.attempt = attempt
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.last: dict[str, Any] | None = None
        """The latest report."""
        self.writes = 0
        """Writes attempted (for tests)."""
        self._pending = False
        self._written_at = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    def report(self, done: int, total: int | None = None, phase: str | None = None) -> None:
        self.last = check_report(done, total, phase)
        if self.pool is None:
            return
        self._pending = True
        self._schedule()

    def _schedule(self) -> None:
        if self._flushing is not None or self._timer is not None:
            return  # the write in flight (or the one due) takes the latest report
        wait = self._written_at + self.interval_s - time.monotonic()
        if wait <= 0:
            self._start()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._start)

    def _start(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._write(), name=f"progress {self.job_id}")
        self._flushing = task
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _write(self) -> None:
        try:
            while self._pending:
                self._pending = False
                value = self.last
                self._written_at = time.monotonic()
                self.writes += 1
                try:
                    with anyio.fail_after(self.timeout_s), db.translate():
                        async with db.bounded(self.pool, self.timeout_s) as conn:
                            await conn.fetchval(_Q["set_progress"], self.job_id, self.worker_id, self.attempt, value)
                except Exception as exc:
                    log.warning("job.progress_write_failed", job_id=str(self.job_id), attempt=self.attempt,
                                error=f"{type(exc).__name__}: {exc}")
                if self._pending:  # reported again while writing: the next write waits for the interval
                    wait = self._written_at + self.interval_s - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
        finally:
            self._flushing = None

    async def flush(self) -> None:
        """Write the latest report now (a handler's last report before it returns), bounded by timeout_s."""
        if self.pool is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            with anyio.move_on_after(self.timeout_s):
                await asyncio.shield(self._flushing)
        if self._pending and self._flushing is None:
            self._written_at = -math.inf
            self._start()
            assert self._flushing is not None
            with anyio.move_on_after(self.timeout_s):
                await asyncio.shield(self._flushing)


async def attach_progress(conn: Any, jobs: Iterable[dict[str, Any]]) -> None:
    """Set each job dict's 'progress' from the database (the list and detail readers' extra column)."""
    jobs = list(jobs)
    if not jobs:
        return
    with db.translate():
        rows = await conn.fetch(_Q["progress_of"], [j["id"] for j in jobs])
    found = {r["id"]: r["progress"] for r in rows}
    for job in jobs:
        job["progress"] = found.get(job["id"])


def render(progress: Mapping[str, Any] | None) -> str:
    """One line for the CLI: '4200/10000 (42%) fetching' or '' when there is none."""
    if not isinstance(progress, Mapping):
        return ""
    done, total, phase = progress.get("done"), progress.get("total"), progress.get("phase")
    text = f"{done}/{total}" if total is not None else f"{done}"
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        text += f" ({100 * done // total}%)"
    return f"{text} {phase}" if phase else text
