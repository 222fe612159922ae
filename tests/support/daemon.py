"""Test helpers: settings for a test database, an in-process daemon, polling for a condition."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import asyncpg

from worker.runtime.daemon import Daemon
from worker.service import build_daemon, create_work_pool
from worker.settings import Settings
from worker.tasks import Registry


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: fast timings, no HTTP port unless asked, no .env file."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "worker_id": "test-worker",
        "poll_interval_s": 30.0,
        "lease_s": 5.0,
        "recovery_interval_s": 0.5,
        "shutdown_grace_s": 2.0,
        "listen_probe_interval_s": 1.0,
        "listen_probe_timeout_s": 2.0,
        "readyz_probe_max_age_s": 5.0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "http_enabled": False,
        "http_port": 0,
        "schedules_enabled": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running_daemon(
    settings: Settings, registry: Registry, *, pool: asyncpg.Pool | None = None
) -> AsyncIterator[Daemon]:
    """A daemon running in this event loop; stopped (softly) and awaited on exit."""
    own_pool = pool is None
    if pool is None:
        pool = await create_work_pool(settings)
    daemon = build_daemon(settings, registry, pool)
    result: dict[str, int] = {}
    try:
        async with anyio.create_task_group() as tg:

            async def _run() -> None:
                result["exit_code"] = await daemon.run()

            tg.start_soon(_run)
            await daemon.started.wait()
            try:
                yield daemon
            finally:
                daemon.stop()
    finally:
        if own_pool:
            await pool.close()


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0, interval_s: float = 0.02
) -> float:
    """Poll until predicate() is true; returns the seconds it took. Fails the test on timeout."""
    start = time.monotonic()
    while True:
        if await predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await anyio.sleep(interval_s)
