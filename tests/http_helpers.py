"""Helpers for the HTTP tests: a running daemon with its HTTP port on 127.0.0.1 and an httpx client to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx

from tests.helpers import make_settings, running_daemon
from worker.builtin import default_registry
from worker.daemon import Daemon
from worker.http import HttpServer
from worker.tasks import Registry

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
