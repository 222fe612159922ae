"""The due pending count (stats.sql oldest_due_pending) against the query it replaced, on one table: the old
count over `job_queue_status_run_at_idx` (recreated alongside for the comparison) and the skip scan over
`job_queue_claim_idx`, at growing backlogs, before and after VACUUM (without a current visibility map an
index-only scan visits the heap per entry). Min of 5 EXPLAIN ANALYZE runs each, no parallel workers.
`python -m bench.due_count [--server-url URL]` (a database of its own, dropped after)."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from typing import Any

import asyncpg

from worker.migrate import migrate
from worker.sql import queries

__all__ = ["main"]

OLD = ("SELECT extract(epoch FROM now() - min(run_at))::float8 AS age_s, count(*) AS n "
       "FROM job_queue WHERE status = 'pending' AND run_at <= now()")
OLD_INDEX = ("CREATE INDEX bench_status_run_at_idx ON job_queue (status, run_at) "
             "WHERE status IN ('pending', 'running')")
DUE = ("INSERT INTO job_queue (task_type, priority, run_at) SELECT 't' || (g % 5), (g % 3) * 10, "
       "now() - interval '1 hour' + g * interval '1 ms' FROM generate_series(1, $1) AS g")
LATER = ("INSERT INTO job_queue (task_type, run_at) SELECT 'later', now() + interval '1 day' "
         "FROM generate_series(1, $1) AS g")
SIZES = [(1_000, 0), (100_000, 0), (100_000, 100_000), (1_000_000, 0)]


async def _best(conn: asyncpg.Connection, sql: str) -> tuple[float, int]:
    """(ms, shared buffers) of the fastest of 5 runs."""
    runs = []
    for _ in range(5):
        answer: Any = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
        plan = (json.loads(answer) if isinstance(answer, str) else answer)[0]
        runs.append((float(plan["Execution Time"]),
                     int(plan["Plan"].get("Shared Hit Blocks", 0)) + int(plan["Plan"].get("Shared Read Blocks", 0))))
    return min(runs)


async def _run(server_url: str) -> None:
    admin = await asyncpg.connect(server_url)
    name = f"bench_due_count_{uuid.uuid4().hex[:8]}"
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(server_url.rsplit("/", 1)[0] + "/" + name)
        try:
            await migrate(conn)
            await conn.execute(OLD_INDEX)
            await conn.execute("SET max_parallel_workers_per_gather = 0")
            new = queries("stats")["oldest_due_pending"]
            print("| due / later | old, no VM | skip scan, no VM | old, vacuumed | skip scan, vacuumed |")
            for due, later in SIZES:
                await conn.execute("TRUNCATE job_queue")
                await conn.execute(DUE, due)
                if later:
                    await conn.execute(LATER, later)
                await conn.execute("ANALYZE job_queue")
                cells = [await _best(conn, OLD), await _best(conn, new)]
                await conn.execute("VACUUM ANALYZE job_queue")
                cells += [await _best(conn, OLD), await _best(conn, new)]
                print(f"| {due:,} / {later:,} | "
                      + " | ".join(f"{ms:.1f} ms, {buffers:,} buffers" for ms, buffers in cells) + " |", flush=True)
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.due_count", description=__doc__.splitlines()[0])
    p.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(_run(p.parse_args(argv).server_url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
