"""The composition root of `worker run`: settings -> pool, registry, daemon (and its HTTP port, scheduler)."""

from __future__ import annotations

import anyio
import asyncpg
import structlog

from worker import db
from worker.builtin import default_registry
from worker.daemon import Daemon
from worker.errors import DatabaseUnavailable, MigrationError
from worker.migrate import migrate, schema_status
from worker.settings import Settings
from worker.tasks import Registry

__all__ = ["build_daemon", "serve"]

log = structlog.get_logger("worker.service")


async def _ensure_schema(settings: Settings, *, apply: bool) -> None:
    """Wait for the database (an outage at start is not fatal), then check or apply migrations."""
    delay = 0.5
    while True:
        try:
            async with db.connection(settings.dsn, connect_timeout_s=settings.db_connect_timeout_s) as conn:
                if apply:
                    applied = await migrate(conn)
                    if applied:
                        log.info("migrate.applied", versions=applied)
                status = await schema_status(conn)
            break
        except DatabaseUnavailable as exc:
            log.warning("daemon.database_unavailable_at_start", error=str(exc), retry_in_s=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 10.0)
    if not status.up_to_date:
        raise MigrationError(
            f"schema is at version {status.current}, this worker needs {status.latest}: run `worker migrate`"
        )


def build_daemon(settings: Settings, registry: Registry, pool: asyncpg.Pool) -> Daemon:
    """Wire the daemon with what it serves: handlers' shared resources, hooks, extra loops."""
    resources = {"pool": pool, "settings": settings}
    return Daemon(settings, registry, pool, resources=resources)


async def serve(
    settings: Settings, registry: Registry | None = None, *, migrate_first: bool = False,
    handle_signals: bool = True,
) -> int:
    await _ensure_schema(settings, apply=migrate_first)
    registry = registry or default_registry(settings)
    pool = await db.create_pool(
        settings.dsn,
        max_size=settings.db_pool_size,
        statement_cache=settings.statement_cache,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
    )
    try:
        daemon = build_daemon(settings, registry, pool)
        return await daemon.run(handle_signals=handle_signals)
    finally:
        with anyio.move_on_after(5):
            await pool.close()
