"""`python -m worker run` as real processes for the fault tests: start with an environment, read their JSON log
lines (collected by a reader thread, so an async test never blocks on a pipe), kill -9 or SIGTERM them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import anyio

__all__ = ["WorkerProcess", "worker_env", "workers"]

Event = dict[str, Any]


def worker_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a test worker: JSON logs, no HTTP port, no schedules, fast timings; `extra` wins."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("WORKER_", "JOB_QUEUE_", "SENTRY_", "GAME_PLATFORM_", "DATABASE_URL", "ADMIN_"))
    }
    env.update({
        "DATABASE_URL": database_url,
        "WORKER_LOG_FORMAT": "json",
        "WORKER_HTTP_ENABLED": "false",
        "WORKER_SCHEDULES_ENABLED": "false",
        "WORKER_SHUTDOWN_GRACE_S": "2",
        "WORKER_LEASE_S": "2",
        "WORKER_RECOVERY_INTERVAL_S": "0.5",
        "WORKER_POLL_INTERVAL_S": "5",
        "WORKER_LISTEN_PROBE_INTERVAL_S": "1",
        "WORKER_LISTEN_PROBE_TIMEOUT_S": "1",
        "WORKER_READYZ_PROBE_MAX_AGE_S": "3",
        "WORKER_DB_CONNECT_TIMEOUT_S": "2",
        "WORKER_BACKOFF_BASE_S": "0.05",
        "WORKER_BACKOFF_MAX_S": "0.2",
    })
    env.update(extra)
    return env


class WorkerProcess:
    """One `python -m worker run` process; its stdout JSON lines land in `events`, everything in `output`."""

    def __init__(self, env: dict[str, str], *, name: str = "worker", args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.env = dict(env)
        self.env.setdefault("WORKER_WORKER_ID", name)
        self.events: list[Event] = []
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run", *args], env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout_lines, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines, False), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: Any, lines: list[str], parse: bool) -> None:
        with stream:
            self._consume(stream, lines, parse)

    def _consume(self, stream: Any, lines: list[str], parse: bool) -> None:
        for line in stream:
            with self._lock:
                lines.append(line)
                if parse and line.startswith("{"):
                    with suppress(ValueError):
                        self.events.append(json.loads(line))

    # --- reading ---------------------------------------------------------------------------------
    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self.stdout_lines) + "".join(self.stderr_lines)

    def named(self, event: str, **fields: Any) -> list[Event]:
        with self._lock:
            return [
                e for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]

    async def wait_event(self, event: str, *, timeout_s: float = 20.0, **fields: Any) -> Event:
        """The first log event called `event` (with these field values); fails the test on timeout or exit."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.named(event, **fields)
            if found:
                return found[0]
            if self.proc.poll() is not None:
                await anyio.sleep(0.1)  # let the reader threads catch up
                found = self.named(event, **fields)
                if found:
                    return found[0]
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before {event}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {event} {fields} within {timeout_s}s:\n{self.output[-4000:]}")
            await anyio.sleep(0.02)

    async def http_port(self, timeout_s: float = 20.0) -> int:
        return int((await self.wait_event("http.listening", timeout_s=timeout_s))["port"])

    # --- stopping --------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout_s: float = 20.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit within {timeout_s}s:\n{self.output[-4000:]}")
            await anyio.sleep(0.02)
        for t in self._readers:
            t.join(timeout=5)
        return int(self.proc.returncode)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for t in self._readers:
            t.join(timeout=5)


@contextmanager
def workers(
    env_for: Callable[[int], dict[str, str]], count: int = 1, *, prefix: str = "w"
) -> Iterator[list[WorkerProcess]]:
    """`count` worker processes (environment `env_for(i)`), killed at the end whatever happened."""
    procs: list[WorkerProcess] = []
    try:
        for i in range(count):
            procs.append(WorkerProcess(env_for(i), name=f"{prefix}{i}"))
        yield procs
    finally:
        for p in procs:
            p.cleanup()
