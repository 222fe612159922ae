"""procrastinate as a system under test: schema via `App.schema_manager.apply_schema_async()` (what
`procrastinate schema --apply` runs), batch enqueue via `Task.batch_defer_async`, the process is what
`procrastinate --app=... worker --concurrency N` does (`App.run_worker_async` under `asyncio.run`, default
logging), with a `PsycopgConnector` app and default worker settings otherwise."""

from __future__ import annotations

import asyncio
import os
from typing import Any

__all__ = [
    "REMAINING_SQL", "SUCCEEDED_SQL", "LatencyEnqueuer", "enqueue_noop", "install", "make_app", "preload",
    "process_env", "run_worker",
]

REMAINING_SQL = "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))"
SUCCEEDED_SQL = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"


def make_app(dsn: str) -> Any:
    from procrastinate import App, PsycopgConnector

    from bench import latency

    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="latency")
    async def record_latency(t: float) -> None:
        latency.record(t)

    return app


async def install(dsn: str) -> None:
    app = make_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def enqueue_noop(dsn: str, n: int, batch: int) -> None:
    app = make_app(dsn)
    async with app.open_async():
        task = app.tasks["noop"]
        done = 0
        while done < n:
            k = min(batch, n - done)
            await task.batch_defer_async(*({} for _ in range(k)))
            done += k


class LatencyEnqueuer:
    def __init__(self, app: Any) -> None:
        self.app = app

    @classmethod
    async def open(cls, dsn: str) -> LatencyEnqueuer:
        app = make_app(dsn)
        await app.open_async()
        return cls(app)

    async def enqueue(self, t: float) -> None:
        await self.app.tasks["latency"].defer_async(t=t)

    async def close(self) -> None:
        await self.app.close_async()


def process_env(dsn: str, concurrency: int, batch_size: int | None) -> dict[str, str]:
    return {"BENCH_DSN": dsn}


def preload() -> None:
    import procrastinate
    import procrastinate.cli  # noqa: F401


def run_worker(concurrency: int, batch_size: int | None, latency: bool) -> int:
    from procrastinate.cli import configure_logging

    configure_logging(verbosity=0)
    app = make_app(os.environ["BENCH_DSN"])

    async def main() -> None:
        async with app.open_async():
            await app.run_worker_async(concurrency=concurrency)

    asyncio.run(main())
    return 0


