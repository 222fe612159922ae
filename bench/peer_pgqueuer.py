"""pgqueuer as a system under test: schema via `Queries.install()` (what `pgq install` runs), batch enqueue
via `Queries.enqueue` with lists, the process is what `pgq run bench.peer_pgqueuer:factory [--batch-size N]`
does (`pgqueuer.run(factory, batch_size=N)` on the CLI's event loop: uvloop when installed), with the
documented factory: one asyncpg connection, `AsyncpgDriver`, `PgQueuer`, two entrypoints."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

__all__ = [
    "REMAINING_SQL", "SUCCEEDED_SQL", "LatencyEnqueuer", "enqueue_noop", "factory", "install", "preload",
    "process_env", "run_worker",
]

REMAINING_SQL = "SELECT EXISTS (SELECT 1 FROM pgqueuer)"
SUCCEEDED_SQL = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"


def _queries(conn: asyncpg.Connection) -> object:
    from pgqueuer import Queries

    return Queries.from_asyncpg_connection(conn)


async def install(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await _queries(conn).install()  # type: ignore[attr-defined]
    finally:
        await conn.close()


async def enqueue_noop(dsn: str, n: int, batch: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        q = _queries(conn)
        done = 0
        while done < n:
            k = min(batch, n - done)
            await q.enqueue(["noop"] * k, [None] * k, [0] * k)  # type: ignore[attr-defined]
            done += k
    finally:
        await conn.close()


class LatencyEnqueuer:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.q = _queries(conn)

    @classmethod
    async def open(cls, dsn: str) -> LatencyEnqueuer:
        return cls(await asyncpg.connect(dsn))

    async def enqueue(self, t: float) -> None:
        await self.q.enqueue("latency", json.dumps({"t": t}).encode())  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.conn.close()


def process_env(dsn: str, concurrency: int, batch_size: int | None) -> dict[str, str]:
    return {"BENCH_DSN": dsn}


@asynccontextmanager
async def factory() -> AsyncIterator[object]:
    from pgqueuer import AsyncpgDriver, Job, PgQueuer

    from bench import latency

    conn = await asyncpg.connect(os.environ["BENCH_DSN"])
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @pgq.entrypoint("latency")
    async def record_latency(job: Job) -> None:
        latency.record(json.loads(job.payload or b"{}")["t"])

    try:
        yield pgq
    finally:
        await conn.close()


def preload() -> None:
    import pgqueuer
    import pgqueuer.adapters.cli.cli  # noqa: F401


def run_worker(concurrency: int, batch_size: int | None, latency: bool) -> int:
    """`pgq run bench.peer_pgqueuer:factory --batch-size N`, without typer's argument parsing."""
    from pgqueuer import run
    from pgqueuer.adapters.cli.cli import asyncio_run
    from pgqueuer.core import logconfig

    logconfig.setup_fancy_logger(logconfig.LogLevel.INFO)
    asyncio_run(run(factory, batch_size=batch_size or 10))
    return 0
