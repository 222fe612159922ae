"""`worker` as a system under test: schema via worker.migrate, batch enqueue via worker.queue.enqueue_many,
the process is exactly `worker run` (drain, built-in `noop`) or `worker run` + a latency task type."""

from __future__ import annotations

import asyncpg

from worker import db, queue
from worker.migrate import migrate

__all__ = [
    "REMAINING_SQL", "SUCCEEDED_SQL", "LatencyEnqueuer", "enqueue_noop", "install", "process_env", "run_worker",
]

REMAINING_SQL = "SELECT EXISTS (SELECT 1 FROM job_queue WHERE status IN ('pending', 'running'))"
SUCCEEDED_SQL = "SELECT count(*) FROM job_queue WHERE status = 'succeeded'"


async def install(dsn: str) -> None:
    conn = await db.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def enqueue_noop(dsn: str, n: int, batch: int) -> None:
    conn = await db.connect(dsn)
    try:
        done = 0
        while done < n:
            k = min(batch, n - done)
            await queue.enqueue_many(conn, [queue.NewJob("noop", {}) for _ in range(k)])
            done += k
    finally:
        await conn.close()


class LatencyEnqueuer:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, dsn: str) -> LatencyEnqueuer:
        return cls(await db.connect(dsn))

    async def enqueue(self, t: float) -> None:
        await queue.enqueue(self.conn, queue.NewJob("bench_latency", {"t": t}))

    async def close(self) -> None:
        await self.conn.close()


def process_env(dsn: str, concurrency: int, batch_size: int | None) -> dict[str, str]:
    return {
        "DATABASE_URL": dsn,
        "WORKER_HTTP_ENABLED": "false",
        "WORKER_SCHEDULES_ENABLED": "false",
        "WORKER_CONCURRENCY": str(concurrency),
    }


def preload() -> None:
    """Import what the process will run before the harness starts the clock: the modules, the CLI parser's,
    and anyio's asyncio backend (anyio.run imports it on first use: ~25 ms)."""
    import anyio

    import bench.worker_latency_task  # noqa: F401
    import worker.cli.main
    import worker.runtime.daemon
    import worker.service

    worker.cli.main.build_parser()
    anyio.run(anyio.sleep, 0)


def run_worker(concurrency: int, batch_size: int | None, latency: bool) -> int:
    if latency:
        from bench.worker_latency_task import main

        return main()
    from worker.cli.main import main as cli_main

    return cli_main(["run"])
