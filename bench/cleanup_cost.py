"""PostgreSQL backend CPU of one full cleanup run, batch by batch, with this tree's `cleanup_batch`: every batch
from the lowest id (`from-start`) against each after the previous batch's last id (`keyed`, what
`worker.operations.cleanup` does). Each run gets a fresh scratch database on the given server with `--expired`
expired succeeded jobs (with their ledger rows), half as many within retention, and optionally `--kept` failed
jobs within their longer retention at the low end of the ids; the database is dropped at the end. The server
must be on this machine (the backend's CPU is read from /proc). Figures only.

    python -m bench.cleanup_cost postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path

import asyncpg

from bench.soak_daemon import FINISHED
from worker import db
from worker.migrate import migrate
from worker.sql import queries

DBNAME = "cleanup_cost_bench"
_KEPT = """INSERT INTO job_queue (id, task_type, status, attempts, created_at, started_at, finished_at)
SELECT job_queue_uuidv7_at(now() - interval '3 hours'), 'noop', 'failed', 1,
       now() - interval '3 hours', now() - interval '3 hours', now() - interval '3 hours'
FROM generate_series(1, $1)"""
_YOUNG = """INSERT INTO job_queue (task_type, status, attempts, created_at, started_at, finished_at)
SELECT 'noop', 'succeeded', 1, now(), now(), now() FROM generate_series(1, $1)"""
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def _run(server: str, query: str, variant: str, expired: int, kept: int, batch: int) -> None:
    admin = await asyncpg.connect(server)
    await admin.execute(f"DROP DATABASE IF EXISTS {DBNAME}")
    await admin.execute(f"CREATE DATABASE {DBNAME}")
    await admin.close()
    url = server.rsplit("/", 1)[0] + "/" + DBNAME
    conn = await db.connect(url)
    try:
        await migrate(conn)
        if kept:
            await conn.execute(_KEPT, kept)
        await conn.execute(FINISHED, expired)
        await conn.execute(_YOUNG, expired // 2)
        await conn.execute("VACUUM ANALYZE job_queue")
        await conn.execute("VACUUM ANALYZE job_runs")
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        key = uuid.UUID(int=0)
        cpu0, t0 = _cpu_s(pid), time.monotonic()
        jobs = batches = 0
        while True:  # succeeded: 1 hour, failed: 10 days
            row = await conn.fetchrow(query, 3600.0, 864000.0, batch, key)
            if variant == "keyed":
                key = row["last_id"]
            batches += 1
            jobs += int(row["jobs"])
            if int(row["jobs"]) < batch:
                break
        cpu, wall = _cpu_s(pid) - cpu0, time.monotonic() - t0
    finally:
        await conn.close()
    print(f"| {variant} | {expired:,} | {kept:,} | {jobs:,} | {batches} | {cpu:.2f} | {wall:.2f} "
          f"| {cpu / max(jobs, 1) * 1e6:.0f} |", flush=True)


async def main(args: argparse.Namespace) -> None:
    query = queries("operator")["cleanup_batch"]
    print("| walk | expired | kept at the old end | deleted | batches | backend CPU s | wall s | CPU us/job |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for kept in (0, args.kept):
            for _ in range(args.runs):
                for variant in ("from-start", "keyed"):
                    await _run(args.server, query, variant, args.expired, kept, args.batch)
    finally:
        admin = await asyncpg.connect(args.server)
        await admin.execute(f"DROP DATABASE IF EXISTS {DBNAME}")
        await admin.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.cleanup_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("server", help="URL of a database on a local server (a scratch database is made beside it)")
    p.add_argument("--expired", type=int, default=200_000)
    p.add_argument("--kept", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--runs", type=int, default=2)
    asyncio.run(main(p.parse_args()))
