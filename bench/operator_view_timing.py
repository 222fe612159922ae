"""Times the admin page's operator-view reads on a seeded database (bench/operator_view_seed.sql):
python -m bench.operator_view_timing postgresql://postgres@127.0.0.1:5432/SCRATCH"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.support.daemon import make_settings
from worker import db, history, nodes, operations
from worker.builtin import default_registry
from worker.sql import queries
from worker.task_policy import apply_overrides


async def timed(label: str, fn: Callable[[], Awaitable[Any]], n: int = 7) -> None:
    await fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t) * 1000)
    print(f"| {label} | {statistics.median(samples):.1f} | {max(samples):.1f} |")


async def main(url: str) -> None:
    conn = await db.connect(url)
    settings = make_settings(url, schedules_enabled=True)
    registry = apply_overrides(default_registry(), settings)
    now = await conn.fetchval("SELECT now()")
    rows = await conn.fetchval("SELECT count(*) FROM job_runs")
    jobs = await conn.fetchval("SELECT count(*) FROM job_queue")
    print(f"ledger rows {rows}, jobs {jobs}")
    await conn.execute("DELETE FROM job_history_state")
    await conn.execute("TRUNCATE job_runs_minutely")
    print("| read | median ms | max ms |\n|---|---|---|")
    for w in history.WINDOWS:
        await timed(f"charts {w}, all types, no rollup yet (ledger only)", lambda w=w: history.charts(conn, now, w))
    t = time.perf_counter()
    await conn.fetchrow(queries("history")["rollup"], 300.0)
    print(f"| first rollup of 8 days (one-off, in the daemon) | {(time.perf_counter() - t) * 1000:.0f} | |")
    t = time.perf_counter()
    await conn.fetchrow(queries("history")["rollup"], 300.0)
    print(f"| next rollup (nothing new) | {(time.perf_counter() - t) * 1000:.1f} | |")
    for w in history.WINDOWS:
        await timed(f"charts {w}, all types", lambda w=w: history.charts(conn, now, w))
        await timed(f"charts {w}, one type", lambda w=w: history.charts(conn, now, w, "noop"))
    async def sample() -> None:
        await conn.execute("DELETE FROM job_queue_samples WHERE minute = date_trunc('minute', now())")
        await conn.execute(queries("history")["sample_queue"])
    await timed("sample_queue (once a minute; 2,000 due jobs)", sample)
    middle = await conn.fetchrow("SELECT job_queue_millis(created_at) AS ms, id FROM job_queue ORDER BY id "
                                 "OFFSET 50000 LIMIT 1")
    await timed("job list, first page of 50", lambda: operations.list_page(conn, limit=50))
    await timed("job list, 50,000 jobs deep", lambda: operations.list_page(
        conn, after=(middle["ms"], middle["id"]), limit=50))
    await timed("job list, status=pending (2,000 newest)", lambda: operations.list_page(
        conn, status="pending", limit=50))
    await timed("job list, error text matching nothing (every job read)", lambda: operations.list_page(
        conn, error_pattern="%no such error%", limit=50))
    await timed("live workers", lambda: nodes.live_workers(conn))
    await timed("unserved task types", lambda: nodes.unserved_task_types(conn))
    await timed("schedules' track record (2 schedules x 24 slots)",
                lambda: history.track_records(conn, settings, now, registry=registry))
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
