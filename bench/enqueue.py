"""Batch enqueue side by side: `worker.queue.enqueue_many`, a plain `INSERT ... SELECT unnest(...)` into the same
`job_queue` table (its triggers, indexes and defaults; none of enqueue_many's checks, dedupe handling or
returned ids), and pgqueuer's batch `Queries.enqueue` when pgqueuer is installed. Each measurement: a fresh
database with the system's schema, `jobs` no-op jobs in calls of `batch`, timed from the first call to the
last one's return (every call is its own transaction, as in production)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import ceiling, peer_pgqueuer, sys_worker
from bench.measure import fresh_database
from bench.systems import installed
from worker import db

__all__ = ["ENQUEUERS", "PLAIN_INSERT", "available", "enqueue_once"]

PLAIN_INSERT = (
    "INSERT INTO job_queue (task_type, payload) SELECT t, p::jsonb FROM unnest($1::text[], $2::text[]) AS u (t, p)"
)


async def _plain(dsn: str, n: int, batch: int) -> None:
    conn = await db.connect(dsn)
    try:
        done = 0
        while done < n:
            k = min(batch, n - done)
            await conn.execute(PLAIN_INSERT, ["noop"] * k, ["{}"] * k)
            done += k
    finally:
        await conn.close()


Enqueue = Callable[[str, int, int], Awaitable[None]]
ENQUEUERS: dict[str, tuple[str, Callable[[str], Awaitable[None]], Enqueue]] = {
    "enqueue_many": ("worker", sys_worker.install, sys_worker.enqueue_noop),
    "plain_insert": ("worker", sys_worker.install, _plain),
    "pgqueuer_batch": ("pgqueuer", peer_pgqueuer.install, peer_pgqueuer.enqueue_noop),
    "ceiling_insert": ("ceiling", ceiling.install, ceiling.enqueue_noop),
}


def available() -> list[str]:
    return [name for name, (kind, _, _) in ENQUEUERS.items() if installed(kind)]


async def enqueue_once(server_url: str, name: str, jobs: int, batch: int) -> dict[str, Any]:
    _, install, enqueue = ENQUEUERS[name]
    async with fresh_database(server_url, f"enq_{name}") as (_, dsn):
        await install(dsn)
        t = time.perf_counter()
        await enqueue(dsn, jobs, batch)
        elapsed = time.perf_counter() - t
    return {"jobs": jobs, "batch": batch, "seconds": elapsed, "per_s": jobs / elapsed}
