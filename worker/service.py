"""The composition root of `worker run`: settings -> discovered tasks, pool, daemon (its HTTP port, scheduler)."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Sequence

import anyio
import asyncpg
import structlog
from pydantic_settings import BaseSettings

from worker import db, limits, queue
from worker.alerts import Alerts
from worker.builtin import builtin_tasks
from worker.discovery import Discovered, config_secrets, discover, load_task_configs
from worker.errors import DatabaseUnavailable, MigrationError
from worker.hooks import MultiHooks
from worker.logs import install_redaction
from worker.metrics import Metrics
from worker.migrate import migrate, schema_status
from worker.runtime.daemon import Daemon
from worker.settings import Settings
from worker.task_policy import apply_overrides
from worker.tasks import Registry

__all__ = ["build_daemon", "create_work_pool", "discover_tasks", "serve"]

log = structlog.get_logger("worker.service")

POOL_CLOSE_S = 2.0


def discover_tasks(settings: Settings, extra: Sequence[str] = ()) -> Discovered:
    """worker/discovery.py's `discover`, with this package's built-in tasks as the fallback when its installed
    metadata lists no entry points: the core names no built-in task (the import contracts in pyproject.toml)."""
    return discover(settings, extra, own_tasks=builtin_tasks)


async def _ensure_schema(settings: Settings, *, apply: bool, registry: Registry) -> None:
    """Wait for the database (an outage at start is not fatal), then check or apply migrations, and publish the
    tasks' concurrency limits (worker/limits.py)."""
    delay = 0.5
    while True:
        try:
            async with db.connection(
                settings.dsn, connect_timeout_s=settings.db_connect_timeout_s,
                statement_cache=settings.statement_cache,
            ) as conn:
                if apply:
                    applied = await migrate(conn)
                    if applied:
                        log.info("migrate.applied", versions=applied)
                status = await schema_status(conn)
                if status.up_to_date and await queue.ensure_statistics(conn):
                    log.info("daemon.analyzed_job_queue", reason="no planner statistics yet")
                if status.up_to_date:
                    await limits.publish(conn, registry, settings.worker_id)
                    log.info("daemon.limits", limits={t.name: (t.concurrency_limit, t.concurrency_key)
                                                      for t in registry if t.concurrency_limit is not None})
            break
        except DatabaseUnavailable as exc:
            log.warning("daemon.database_unavailable_at_start", error=str(exc), retry_in_s=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 10.0)
    if not status.up_to_date:
        raise MigrationError(
            f"schema is at version {status.current}, this worker needs {status.latest}: run `worker migrate`"
        )


def _add_http(daemon: Daemon, metrics: Metrics) -> None:
    from starlette.routing import BaseRoute

    from worker.http import HttpServer, create_app

    settings = daemon.settings
    extra: list[BaseRoute] = []
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token is not None else ""
    if admin_token:  # the admin page exists only with a token; otherwise /admin is 404
        from worker.http.admin import admin_mount

        extra.append(admin_mount(daemon, admin_token))
    app = create_app(daemon, metrics=metrics, extra_routes=extra)
    server = HttpServer(app, host=settings.http_host, port=settings.http_port)
    daemon.resources["http_server"] = server
    daemon.add_loop("http", server.run)
    if not settings.runner_secrets():
        log.warning(
            "http.no_runner_secret",
            note="JOB_QUEUE_RUNNER_SECRET is not set: /trigger and /api/jobs/run answer 503",
        )


async def create_work_pool(settings: Settings) -> asyncpg.Pool:
    """The pool `worker run` works with (and hands to handlers), as the settings describe it."""
    return await db.create_pool(
        settings.dsn,
        max_size=settings.db_pool_size,
        statement_cache=settings.statement_cache,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
    )


def build_daemon(
    settings: Settings, registry: Registry, pool: asyncpg.Pool, *, task_configs: Iterable[BaseSettings] = ()
) -> Daemon:
    """Wire the daemon with what it serves: handlers' shared resources, hooks, extra loops. The registry's tasks
    get the environment's overrides (idempotent) and their own settings (`task_configs`, or loaded from the
    environment now: ConfigError when bad)."""
    registry = apply_overrides(registry, settings)
    resources = {"pool": pool, "settings": settings, "task_configs": load_task_configs(registry, task_configs),
                 "registry": registry}  # cleanup stops at its schedule's next slot (worker/builtin/cleanup.py)
    metrics = Metrics(registry.names(), settings=settings, registry=registry)
    alerts = Alerts(settings)
    daemon = Daemon(settings, registry, pool, hooks=MultiHooks(metrics, alerts), resources=resources)
    resources.update(metrics=metrics, alerts=alerts)
    from worker.runtime.node_loop import NodeLoop

    daemon.add_loop("nodes", NodeLoop(daemon).run)
    metrics.listener_up = lambda: daemon.listener is None or daemon.listener.state.connected
    if settings.http_enabled:
        _add_http(daemon, metrics)
    if settings.schedules_enabled:
        from worker.runtime.scheduler import Scheduler

        daemon.add_loop("scheduler", Scheduler(settings, registry, pool).run)
    return daemon


async def serve(
    settings: Settings, registry: Registry | None = None, *, migrate_first: bool = False,
    handle_signals: bool = True,
) -> int:
    """Run the daemon with `registry`, or the discovered tasks this replica is allowed to run. Discovery and the
    tasks' settings are checked before anything connects (ConfigError)."""
    registry = registry if registry is not None else discover_tasks(settings).enabled
    registry = apply_overrides(registry, settings)
    install_redaction([*settings.secret_values(), *config_secrets(load_task_configs(registry))])
    await _ensure_schema(settings, apply=migrate_first, registry=registry)
    pool = await create_work_pool(settings)
    try:
        daemon = build_daemon(settings, registry, pool)
        # Everything start-up made (modules, tasks, settings, the pool) lives as long as the process: out of the
        # cyclic collector's way, whose full passes would otherwise walk it again and again while jobs churn.
        gc.collect()
        gc.freeze()
        code = await daemon.run(handle_signals=handle_signals)
        daemon.resources["alerts"].flush()
        return code
    finally:
        # A pool whose connections hang (an outage) is not waited for: stopping ends within the grace period plus
        # SHUTDOWN_WRITE_S (worker/runtime/stopping.py) and this (tests/test_faults_dirty.py).
        with anyio.move_on_after(POOL_CLOSE_S):
            await pool.close()
        pool.terminate()
