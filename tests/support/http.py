"""Helpers for the HTTP tests: a running daemon with its HTTP port on 127.0.0.1 and an httpx client to it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import asyncpg
import httpx

from tests.support.daemon import make_settings, running_daemon
from worker import queue
from worker.builtin import default_registry
from worker.http import HttpServer
from worker.runtime.daemon import Daemon
from worker.tasks import Registry

# Poll-only, with the poll and the lease-recovery sweep (which claims too) far beyond any test: jobs that become
# due after the daemon's first claim at start are left alone unless something wakes it (or /api/jobs/run runs).
POLL_ONLY: dict[str, Any] = {"listen_enabled": False, "poll_interval_s": 60.0, "recovery_interval_s": 120.0}
DUE_SOON_S = 0.3

SECRET = "runner-secret-current-7f3a"
PREVIOUS = "runner-secret-previous-91bc"


def auth(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@contextlib.asynccontextmanager
async def http_daemon(
    database_url: str, registry: Registry | None = None, **overrides: Any
) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    values: dict[str, Any] = {
        "http_enabled": True, "http_host": "127.0.0.1", "http_port": 0, "runner_secret": SECRET,
    }
    values.update(overrides)
    settings = make_settings(database_url, **values)
    async with running_daemon(settings, registry or default_registry(settings)) as daemon:
        server = daemon.resources["http_server"]
        assert isinstance(server, HttpServer)
        await server.listening.wait()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=15) as client:
            yield daemon, client


async def job_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM job_queue"))


async def enqueue_due_soon(
    conn: asyncpg.Connection, payload: dict[str, Any] | None = None, *, task_type: str = "noop", **kw: Any
) -> uuid.UUID:
    """A job due in DUE_SOON_S seconds: enqueue it before the daemon starts, then `await until_due()`."""
    run_at = datetime.now(UTC) + timedelta(seconds=DUE_SOON_S)
    job = queue.NewJob(task_type, payload or {}, run_at=run_at, **kw)
    return (await queue.enqueue(conn, job)).id


async def until_due() -> None:
    await anyio.sleep(DUE_SOON_S + 0.05)
