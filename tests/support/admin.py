"""Helpers for the admin page tests: a daemon with its HTTP port and an admin token, a signed-in client."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
from pydantic import BaseModel, ConfigDict

from tests.support.daemon import make_settings, running_daemon, wait_for
from tests.support.rows import status_of
from worker import queue
from worker.builtin import default_registry
from worker.errors import PermanentJobError
from worker.http import HttpServer
from worker.runtime.daemon import Daemon
from worker.tasks import Registry, TaskContext

TOKEN = "admin-token-for-tests-5d1e"


class Anything(BaseModel):
    model_config = ConfigDict(extra="allow")


def admin_registry() -> Registry:
    """The shipped tasks, plus `flaky` (fails its first attempt, then succeeds with a sync-like summary) and
    `boom` (fails for good with the payload's `error`)."""
    registry = default_registry()

    @registry.register("flaky", Anything, description="Fails the first attempt, succeeds afterwards.")
    async def flaky(payload: Anything, ctx: TaskContext) -> dict[str, Any]:
        if ctx.job.attempt == 1:
            raise RuntimeError("first attempt always fails: upstream 503")
        return {"competitors": 3, "updated": 2, "failed": 1,
                "errors": [{"competitor_id": "c-42", "error": "player not found"}]}

    @registry.register("boom", Anything, description="Fails for good.")
    async def boom(payload: Anything, ctx: TaskContext) -> None:
        raise PermanentJobError(str(payload.model_dump().get("error", "boom")))

    return registry


@contextlib.asynccontextmanager
async def admin_daemon(
    database_url: str, registry: Registry | None = None, **overrides: Any
) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    values: dict[str, Any] = {"http_enabled": True, "http_host": "127.0.0.1", "http_port": 0, "admin_token": TOKEN}
    values.update(overrides)
    settings = make_settings(database_url, **values)
    async with running_daemon(settings, registry or admin_registry()) as daemon:
        server = daemon.resources["http_server"]
        assert isinstance(server, HttpServer)
        await server.listening.wait()
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=15) as client:
            yield daemon, client


def origin(client: httpx.AsyncClient) -> dict[str, str]:
    return {"Origin": str(client.base_url).rstrip("/")}


async def sign_in(client: httpx.AsyncClient) -> str:
    """Sign in through the form; returns the session's CSRF token (from the page)."""
    r = await client.post("/admin/login", data={"token": TOKEN}, headers=origin(client))
    assert r.status_code == 303, r.text
    page = await client.get("/admin/")
    assert page.status_code == 200
    match = re.search(r'data-csrf="([0-9a-f]+)"', page.text)
    assert match, "the page carries the CSRF token"
    return match.group(1)


def browser_headers(client: httpx.AsyncClient, csrf: str) -> dict[str, str]:
    return {**origin(client), "X-CSRF-Token": csrf}


BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def enqueue(conn: asyncpg.Connection, task_type: str, payload: dict[str, Any] | None = None,
                  **kw: Any) -> uuid.UUID:
    return (await queue.enqueue(conn, queue.NewJob(task_type, payload or {}, **kw))).id


async def until_status(conn: asyncpg.Connection, job_id: uuid.UUID, status: str, timeout_s: float = 10) -> None:
    async def done() -> bool:
        return await status_of(conn, job_id) == status

    await wait_for(done, timeout_s=timeout_s)
