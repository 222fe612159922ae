"""The supervised LISTEN connection and its NOTIFY round-trip probe (in the manner of pgqueuer's
`listener_healthy`).

A notification only sets the wake event; the daemon's fetch loop does the work. When the connection dies
(closed by the server, broken path, failed probe) the loop terminates it (a black-holed connection would never
answer a graceful close), waits with capped, jittered backoff, connects again, LISTENs again, and sets the wake
event once so that jobs inserted meanwhile are fetched at once.

Each connection is a `_Link` with its own "lost" event and its own termination callback: asyncpg calls that
callback on a later loop turn, often after the next connection is installed, and it must never count against the
new one (guarded by tests/test_faults_listener.py).
"""

from __future__ import annotations

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
from worker.backoff import Backoff, reconnect_policy
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


@dataclass(eq=False, slots=True)
class _Link:
    """One LISTEN connection and what happened to it; nothing here outlives the connection."""

    conn: asyncpg.Connection
    lost: anyio.Event = field(default_factory=anyio.Event)
    probes_ok: int = 0


@dataclass
class Listener:
    dsn: str
    wake: Callable[[str], None]
    """Called with the notification's payload (a task type) for every job notification."""
    probe_interval_s: float = 10.0
    probe_timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    reconnect_max_s: float | None = None
    """Cap on the wait between reconnect attempts; None = the probe interval, so that a healed path is back
    within about one probe interval."""
    on_reconnect: Callable[[], None] | None = None
    state: ListenerState = field(default_factory=ListenerState)
    _link: _Link | None = None
    _probe_waiters: dict[str, anyio.Event] = field(default_factory=dict)

    async def run(self, stop: anyio.Event) -> None:
        """Keep a LISTEN connection alive until `stop` is set. Never returns early on database trouble.

        One loop: connect, watch, terminate, back off. The backoff starts over only after a connection proved
        stable (two probes a probe interval apart), so connections that die as soon as they are made are spaced
        like failed connects (guarded by
        test_a_listener_whose_new_connections_die_at_once_backs_off_instead_of_reconnecting_in_a_loop)."""
        backoff = Backoff(reconnect_policy(self.reconnect_max_s or self.probe_interval_s))
        connected_before = False
        try:
            while not stop.is_set():
                link = await self._connect()
                if link is not None:
                    if connected_before:
                        self.state.reconnects += 1
                        log.info("listener.reconnected", reconnects=self.state.reconnects)
                        if self.on_reconnect is not None:
                            self.on_reconnect()
                    connected_before = True
                    self.wake("")  # anything inserted while we were away is fetched now
                    try:
                        await self._watch(link, stop)
                    finally:
                        self._drop(link)
                    if stop.is_set():
                        break
                    if link.probes_ok >= 2:
                        backoff.succeeded()
                delay = backoff.failed()
                log.warning(
                    "listener.connect_failed" if link is None else "listener.connection_lost",
                    error=self.state.last_error, retry_in_s=round(delay, 2),
                )
                with anyio.move_on_after(delay):
                    await stop.wait()
        finally:
            self.state.connected = False

    async def _connect(self) -> _Link | None:
        """A new LISTENing connection, installed as the current one; None (and last_error) when it failed."""
        try:
            conn = await db.connect(self.dsn, connect_timeout_s=self.connect_timeout_s, app="worker-listener")
        except DatabaseUnavailable as exc:
            self.state.last_error = str(exc)
            return None
        link = _Link(conn)

        def on_terminated(_conn: Any) -> None:
            # Bound to this link: a late call for an old connection sets only that connection's event.
            link.lost.set()
            if self._link is link:
                self.state.connected = False

        try:
            with db.translate():
                await conn.add_listener(JOB_CHANNEL, self._on_job)
                await conn.add_listener(PROBE_CHANNEL, self._on_probe)
            conn.add_termination_listener(on_terminated)
        except DatabaseUnavailable as exc:
            conn.terminate()
            self.state.last_error = str(exc)
            return None
        except BaseException:
            conn.terminate()
            raise
        self._link = link
        self.state.connected = True
        self.state.last_error = None
        log.info("listener.listening", channels=[JOB_CHANNEL, PROBE_CHANNEL])
        return link

    async def _watch(self, link: _Link, stop: anyio.Event) -> None:
        """Probe periodically; return when stopping or when this connection is lost."""
        while not stop.is_set():
            if not await self._probe(link):
                return
            with anyio.move_on_after(self.probe_interval_s * (0.9 + random.random() * 0.2)):
                async with anyio.create_task_group() as tg:

                    async def _until(ev: anyio.Event) -> None:
                        await ev.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(_until, stop)
                    tg.start_soon(_until, link.lost)
            if link.lost.is_set():
                self.state.last_error = "connection lost"
                return

    async def probe(self) -> bool:
        """A NOTIFY round trip on the current listening connection. Records the RTT; False when it failed."""
        link = self._link
        return link is not None and await self._probe(link)

    async def _probe(self, link: _Link) -> bool:
        conn = link.conn
        if conn.is_closed() or link.lost.is_set():
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
            if self._link is link:
                self.state.connected = False
            self.state.last_error = f"probe failed: {type(exc).__name__}: {exc}"
            log.warning("listener.probe_failed", error=self.state.last_error)
            return False
        finally:
            self._probe_waiters.pop(token, None)
        link.probes_ok += 1
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

    def _drop(self, link: _Link) -> None:
        """Uninstall and terminate `link`: never a graceful close, which a black-holed connection would leave
        unanswered (a LISTEN session holds no transaction, so the server loses nothing by the abrupt end).
        Guarded by test_stopping_a_listener_whose_path_is_black_holed_does_not_wait_for_the_dead_connection."""
        if self._link is link:
            self._link = None
            self.state.connected = False
        link.conn.terminate()
