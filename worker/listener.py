"""The supervised LISTEN connection and its NOTIFY round-trip probe (in the manner of pgqueuer's
`listener_healthy`).

A notification only sets the wake event; the daemon's fetch loop does the work. When the connection dies
(closed by the server, broken path, failed probe) the loop closes it, waits with backoff, connects again,
LISTENs again, and sets the wake event once so that jobs inserted meanwhile are fetched at once.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import asyncpg
import structlog

from worker import db
from worker.errors import DatabaseUnavailable
from worker.sql import queries

__all__ = ["JOB_CHANNEL", "PROBE_CHANNEL", "Listener", "ListenerState"]

JOB_CHANNEL = "job_queue"
PROBE_CHANNEL = "job_queue_probe"

log = structlog.get_logger("worker.listener")
_Q = queries("listener")


@dataclass(slots=True)
class ListenerState:
    connected: bool = False
    last_probe_ok_monotonic: float | None = None
    last_probe_rtt_s: float | None = None
    reconnects: int = 0
    notifications: int = 0
    last_error: str | None = None

    def probe_age_s(self) -> float | None:
        if self.last_probe_ok_monotonic is None:
            return None
        return time.monotonic() - self.last_probe_ok_monotonic


@dataclass
class Listener:
    dsn: str
    wake: Callable[[str], None]
    """Called with the notification's payload (a task type) for every job notification."""
    probe_interval_s: float = 10.0
    probe_timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    reconnect_max_s: float = 10.0
    on_reconnect: Callable[[], None] | None = None
    state: ListenerState = field(default_factory=ListenerState)
    _conn: asyncpg.Connection | None = None
    _lost: anyio.Event = field(default_factory=anyio.Event)
    _probe_waiters: dict[str, anyio.Event] = field(default_factory=dict)

    async def run(self, stop: anyio.Event) -> None:
        """Keep a LISTEN connection alive until `stop` is set. Never returns early on database trouble."""
        failures = 0
        first = True
        while not stop.is_set():
            try:
                await self._connect()
            except DatabaseUnavailable as exc:
                failures += 1
                self.state.last_error = str(exc)
                delay = min(self.reconnect_max_s, 0.2 * 2 ** min(failures, 10)) * (0.5 + random.random() / 2)
                log.warning("listener.connect_failed", error=str(exc), retry_in_s=round(delay, 2))
                with anyio.move_on_after(delay):
                    await stop.wait()
                continue
            if not first:
                self.state.reconnects += 1
                log.info("listener.reconnected", reconnects=self.state.reconnects)
                if self.on_reconnect is not None:
                    self.on_reconnect()
            first = False
            failures = 0
            self.wake("")  # anything inserted while we were away is fetched now
            try:
                await self._watch(stop)
            finally:
                await self._close()
        self.state.connected = False

    async def _connect(self) -> None:
        self._lost = anyio.Event()
        conn = await db.connect(self.dsn, connect_timeout_s=self.connect_timeout_s, app="worker-listener")
        try:
            with db.translate():
                await conn.add_listener(JOB_CHANNEL, self._on_job)
                await conn.add_listener(PROBE_CHANNEL, self._on_probe)
            conn.add_termination_listener(self._on_terminated)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self.state.connected = True
        self.state.last_error = None
        log.info("listener.listening", channels=[JOB_CHANNEL, PROBE_CHANNEL])

    async def _watch(self, stop: anyio.Event) -> None:
        """Probe periodically; return when stopping or when the connection is lost."""
        while not stop.is_set():
            ok = await self.probe()
            if not ok:
                return
            with anyio.move_on_after(self.probe_interval_s * (0.9 + random.random() * 0.2)):
                async with anyio.create_task_group() as tg:

                    async def _until(ev: anyio.Event) -> None:
                        await ev.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(_until, stop)
                    tg.start_soon(_until, self._lost)
            if self._lost.is_set():
                log.warning("listener.connection_lost")
                return

    async def probe(self) -> bool:
        """A NOTIFY round trip on the listening connection. Records the RTT; False when it failed."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        token = uuid.uuid4().hex
        arrived = anyio.Event()
        self._probe_waiters[token] = arrived
        started = time.monotonic()
        try:
            with anyio.fail_after(self.probe_timeout_s):
                with db.translate():
                    await conn.execute(_Q["probe"], PROBE_CHANNEL, token)
                await arrived.wait()
        except (TimeoutError, DatabaseUnavailable, asyncpg.PostgresError) as exc:
            self.state.connected = False
            self.state.last_error = f"probe failed: {type(exc).__name__}: {exc}"
            log.warning("listener.probe_failed", error=self.state.last_error)
            return False
        finally:
            self._probe_waiters.pop(token, None)
        rtt = time.monotonic() - started
        self.state.last_probe_ok_monotonic = time.monotonic()
        self.state.last_probe_rtt_s = rtt
        return True

    def _on_job(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.state.notifications += 1
        self.wake(payload)

    def _on_probe(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        waiter = self._probe_waiters.get(payload)
        if waiter is not None:
            waiter.set()

    def _on_terminated(self, _conn: Any) -> None:
        self.state.connected = False
        self._lost.set()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self.state.connected = False
        if conn is None:
            return
        with contextlib.suppress(Exception):
            with anyio.move_on_after(2):
                await conn.close(timeout=2)
        if not conn.is_closed():
            conn.terminate()

