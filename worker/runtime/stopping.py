"""The last writes of a stopping daemon: interrupted jobs handed back, buffered completions written.

Bounded by SHUTDOWN_WRITE_S whatever the database does, so that a stop during an outage ends within the grace
period plus that (tests/test_faults_dirty.py). What could not be written is said in the log
(`shutdown.unrecorded`) and recovered when its lease expires.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import anyio
import asyncpg
import structlog

from worker import db, queue
from worker.errors import DatabaseUnavailable
from worker.runtime.completions import Completions

__all__ = ["SHUTDOWN_WRITE_S", "write_back"]

log = structlog.get_logger("worker.daemon")

SHUTDOWN_WRITE_S = 5.0
"""How long a stopping daemon keeps trying to hand back interrupted jobs and write buffered completions."""


async def write_back(
    pool: asyncpg.Pool, worker_id: str, to_release: list[tuple[uuid.UUID, int, datetime]], completions: Completions,
    *, call_timeout_s: float,
) -> None:
    """Hand `to_release` back to pending (the attempt not counted) and flush `completions`, retrying within
    SHUTDOWN_WRITE_S. `to_release` is emptied as it is written."""
    with anyio.move_on_after(SHUTDOWN_WRITE_S):
        while to_release or completions.pending:
            try:
                if to_release:
                    async with db.bounded(pool, call_timeout_s) as conn:
                        released = await queue.release(conn, worker_id, to_release)
                    for job_id, attempt, _ in to_release:
                        log.info(
                            "job.released", job_id=str(job_id), attempt=attempt, worker_id=worker_id,
                            handed_back=job_id in released,
                        )
                    to_release.clear()
                if completions.pending and not await completions.flush():
                    await anyio.sleep(0.2)
            except DatabaseUnavailable as exc:
                log.warning("shutdown.database_unavailable", error=str(exc))
                await anyio.sleep(0.2)
    if to_release or completions.pending:
        log.error(
            "shutdown.unrecorded", released_pending=len(to_release), unacked=len(completions.pending),
            note="their leases expire and lease recovery puts them back",
        )
