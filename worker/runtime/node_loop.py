"""Live workers: each daemon keeps a row in `worker_nodes` (worker id, host, version, task types, concurrency,
started at, last seen, jobs running now), upserted once per heartbeat interval by a loop of its own, so the
registration costs one statement per interval and nothing per job. A row not seen for GONE_LEASES lease periods
counts as gone: it is never shown and the next upsert of any daemon deletes it. A daemon that stops deletes
its own row.

The same loop, once a minute, samples the queue's due depth and rolls up the ledger's closed minutes for the
admin page's charts (worker/history.py).
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import structlog

from worker import __version__, db
from worker.db import translate
from worker.errors import DatabaseUnavailable
from worker.nodes import GONE_LEASES
from worker.sql import queries

if TYPE_CHECKING:
    from worker.runtime.daemon import Daemon

__all__ = ["NodeLoop"]

log = structlog.get_logger("worker.nodes")
_Q = queries("nodes")
_H = queries("history")

ROLLUP_SETTLE_S = 300.0
"""Ledger minutes are rolled up once they ended this long ago (completions are written within it)."""
SAMPLE_EVERY_S = 60.0
HISTORY_DEADLINE_S = 120.0
LEAVE_S = 2.0


class NodeLoop:
    """The daemon's `nodes` loop: registration at the heartbeat interval, queue samples and the ledger rollup
    once a minute."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.started_at = datetime.now(UTC)
        self.host = socket.gethostname()

    async def beat_once(self) -> int:
        """Upsert this worker's row; returns how many gone workers' rows it deleted."""
        d = self.daemon
        s = d.settings
        async with db.bounded(d.pool, s.db_call_timeout_s) as conn:
            with translate():
                removed: int = await conn.fetchval(
                    _Q["beat"], d.worker_id, self.host, os.getpid(), __version__, list(d.task_types),
                    s.concurrency, s.lease_s, len(d.running), self.started_at, GONE_LEASES,
                )
        if removed:
            log.info("nodes.removed_gone_workers", count=removed)
        return removed

    async def history_once(self) -> None:
        """Sample the queue (once a minute across all daemons) and roll up the ledger's closed minutes."""
        async with db.bounded(self.daemon.pool, HISTORY_DEADLINE_S) as conn:
            with translate():
                await conn.execute(_H["sample_queue"])
                await conn.fetchrow(_H["rollup"], ROLLUP_SETTLE_S)

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._history_loop)
                while True:
                    try:
                        await self.beat_once()
                    except DatabaseUnavailable as exc:
                        log.warning("nodes.database_unavailable", error=str(exc))
                    await anyio.sleep(self.daemon.settings.heartbeat_interval_s)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(LEAVE_S):
                await self._leave()

    async def _history_loop(self) -> None:
        """Apart from the registration, so that a long first rollup (a large ledger) never delays it."""
        while True:
            try:
                await self.history_once()
            except DatabaseUnavailable as exc:
                log.warning("history.database_unavailable", error=str(exc))
            await anyio.sleep(SAMPLE_EVERY_S)

    async def _leave(self) -> None:
        try:
            async with self.daemon.pool.acquire() as conn:
                with translate():
                    await conn.execute(_Q["leave"], self.daemon.worker_id, self.started_at)
        except Exception as exc:  # the row expires on its own: GONE_LEASES
            log.warning("nodes.leave_failed", error=f"{type(exc).__name__}: {exc}")
