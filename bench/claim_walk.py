"""A claim's walk of the claim index with a dead head: from the head, and from the key of the claim before
(migration 016, worker/runtime/walk.py). On a throwaway cluster (stock settings, autovacuum off for the table so
that the dead head stays): `--pending` due jobs, of which `--claimed` are claimed first (their entries are the
dead head), then `--rounds` rounds alternating `--claims` claims of `--batch` jobs from the head and as many from
each previous claim's key. Prints milliseconds and claim-index blocks per claim (each claim is its own
transaction: the claimed jobs stay running, so every claim adds its entries to the head).

    python -m bench.claim_walk --pending 300000 --claimed 100000 --batch 500
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg

from bench.measure import fresh_database
from worker import db, queue
from worker.cli.pgcluster import throwaway_cluster
from worker.migrate import migrate
from worker.runtime.walk import WalkFrom

__all__ = ["main"]

_BLOCKS = "SELECT pg_stat_get_xact_blocks_fetched('job_queue_claim_idx'::regclass)"


async def _claims(conn: asyncpg.Connection, n: int, batch: int, from_key: bool) -> tuple[float, float]:
    """(ms, claim index blocks) per claim over n claims, each walking from the previous one's key or the head."""
    walk, ms, blocks = WalkFrom(full_walk_every_s=float("inf")), [], []
    key: uuid.UUID | None = None
    for _ in range(n):
        async with conn.transaction():
            before = await conn.fetchval(_BLOCKS)
            t = time.perf_counter()
            jobs = await queue.claim(conn, worker_id="bench", task_types=["noop"], limit=batch, lease_s=3600,
                                     walk_from=key)
            ms.append((time.perf_counter() - t) * 1000)
            blocks.append(await conn.fetchval(_BLOCKS) - before)
        walk.claimed(jobs, batch, key, time.monotonic())
        key = walk.next(time.monotonic()) if from_key else None
    return statistics.median(ms), statistics.median(blocks)


async def _run(url: str, args: argparse.Namespace) -> None:
    async with fresh_database(url, "claim_walk") as (_, dsn):
        conn = await db.connect(dsn)
        try:
            await migrate(conn)
            await conn.execute("ALTER TABLE job_queue SET (autovacuum_enabled = false)")
            await conn.execute("INSERT INTO job_queue (task_type) SELECT 'noop' FROM generate_series(1, $1)",
                               args.pending)
            await conn.execute("ANALYZE job_queue")
            for start in range(0, args.claimed, 10_000):
                await queue.claim(conn, worker_id="bench", task_types=["noop"],
                                  limit=min(10_000, args.claimed - start), lease_s=3600)
            for r in range(args.rounds):
                for from_key in (False, True):
                    ms, blocks = await _claims(conn, args.claims, args.batch, from_key)
                    print(f"round {r + 1}, from the {'key' if from_key else 'head'}: {ms:.2f} ms per claim of "
                          f"{args.batch}, {blocks:,.0f} claim index blocks (medians of {args.claims})", flush=True)
        finally:
            await conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.claim_walk", description=__doc__.splitlines()[0])
    p.add_argument("--pending", type=int, default=300_000)
    p.add_argument("--claimed", type=int, default=100_000, help="claimed first: the dead head")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--claims", type=int, default=40, help="claims per measurement")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    if args.claimed + 2 * args.rounds * args.claims * args.batch > args.pending:
        p.error("--pending must cover --claimed plus every measured claim")
    with throwaway_cluster() as cluster:
        asyncio.run(_run(cluster.url(), args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
