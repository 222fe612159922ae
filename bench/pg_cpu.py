"""PostgreSQL's CPU per job: the CPU time (user + system) of a throwaway cluster's processes, the exited ones
included (the postmaster's reaped children, read after a settling second), over (a) a batch enqueue of `--jobs`
no-op jobs with `worker.queue.enqueue_many` in calls of `--batch`, and (b) a drain of as many no-op jobs by
`worker run` at `--concurrency`; then the batch enqueue rate of bench/enqueue.py's `enqueue_many` and
`plain_insert`. Each round uses a fresh database; `--finished N` first fills it with N finished jobs and their ledger
rows (ids from the schema's default, as a table in use holds), and then also measures (c) the retention cleanup
of those jobs (`worker.operations.cleanup`), per job deleted. The schema is that of the checkout `worker` is
imported from: run `python -m bench.pg_cpu --rounds 3` from inside the checkout to measure (a copy of this file in
another one measures that one)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import worker
from bench import enqueue, sys_worker
from bench.measure import fresh_database
from bench.procs import cluster_cpu_s
from bench.soak_daemon import FINISHED
from worker import db, operations
from worker.cli.pgcluster import throwaway_cluster

__all__ = ["main"]


async def _settled_cpu_s(postmaster: int) -> float:
    """cluster_cpu_s once the backends of closed connections have exited and been reaped (until then the CPU
    of an exiting backend is in neither count)."""
    await asyncio.sleep(1.0)
    return cluster_cpu_s(postmaster)


async def _fill(dsn: str, finished: int) -> None:
    """`finished` finished jobs with their ledger rows, two hours old, in statements of at most 100,000."""
    conn = await db.connect(dsn)
    try:
        for start in range(0, finished, 100_000):
            await conn.execute(FINISHED, min(100_000, finished - start))
        await conn.execute("VACUUM ANALYZE job_queue")
        await conn.execute("VACUUM ANALYZE job_runs")
    finally:
        await conn.close()


async def _enqueue_round(server_url: str, pm: int, jobs: int, batch: int, finished: int) -> float:
    async with fresh_database(server_url, "pgcpu_enq") as (_, dsn):
        await sys_worker.install(dsn)
        await _fill(dsn, finished)
        before = await _settled_cpu_s(pm)
        await sys_worker.enqueue_noop(dsn, jobs, batch)
        return await _settled_cpu_s(pm) - before


async def _drain_round(
    server_url: str, pm: int, jobs: int, batch: int, concurrency: int, finished: int
) -> tuple[float, float, float | None]:
    """(PostgreSQL CPU s of the drain, jobs/s, CPU s per job of cleaning up the `finished` jobs or None)."""
    async with fresh_database(server_url, "pgcpu_drain") as (_, dsn):
        await sys_worker.install(dsn)
        await _fill(dsn, finished)
        await sys_worker.enqueue_noop(dsn, jobs, batch)
        conn = await db.connect(dsn)
        try:
            await conn.execute("VACUUM ANALYZE job_queue")
            await conn.execute("CHECKPOINT")
            env = {**os.environ, **sys_worker.process_env(dsn, concurrency, None),
                   "PYTHONPATH": str(Path(worker.__file__).resolve().parent.parent)}
            before = await _settled_cpu_s(pm)
            t = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from worker.cli.main import main; sys.exit(main(['run']))"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while await conn.fetchval(sys_worker.REMAINING_SQL):
                    await asyncio.sleep(0.1)
                elapsed = time.perf_counter() - t
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            cpu = await _settled_cpu_s(pm) - before
            done = await conn.fetchval(sys_worker.SUCCEEDED_SQL)
            if done != jobs + finished:
                raise RuntimeError(f"drained {done - finished} of {jobs}")
            cleanup = None
            if finished:
                before = await _settled_cpu_s(pm)
                hour = timedelta(hours=1)  # the filled jobs only: they finished two hours ago
                deleted = await operations.cleanup(conn, succeeded_older_than=hour, failed_older_than=hour)
                cleanup = (await _settled_cpu_s(pm) - before) / deleted.jobs
        finally:
            await conn.close()
        return cpu, jobs / elapsed, cleanup


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pg_cpu", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--finished", type=int, default=0,
                   help="finished jobs (with ledger rows) in each round's table first; also measures their cleanup")
    p.add_argument("--enqueue-jobs", type=int, default=20_000, help="jobs per enqueue-rate measurement")
    args = p.parse_args(argv)
    print(f"schema: {Path(worker.__file__).resolve().parent.parent / 'sql'}", flush=True)
    with throwaway_cluster({"fsync": "on"}) as cluster:
        pm = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
        url = cluster.url()
        enq, drain, rate, rates = [], [], [], {"enqueue_many": [], "plain_insert": []}  # type: ignore[var-annotated]
        clean: list[float] = []
        for r in range(args.rounds):
            enq.append(asyncio.run(_enqueue_round(url, pm, args.jobs, args.batch, args.finished)) / args.jobs * 1e6)
            cpu, per_s, cleanup = asyncio.run(
                _drain_round(url, pm, args.jobs, args.batch, args.concurrency, args.finished))
            drain.append(cpu / args.jobs * 1e6)
            rate.append(per_s)
            if cleanup is not None:
                clean.append(cleanup * 1e6)
            for name in rates:
                run = asyncio.run(enqueue.enqueue_once(url, name, args.enqueue_jobs, args.batch))
                rates[name].append(run["per_s"])
            cleaned = f", cleanup {clean[-1]:.1f} us/job" if clean else ""
            print(f"round {r + 1}: enqueue {enq[-1]:.1f} us/job, drain {drain[-1]:.1f} us/job "
                  f"({per_s:,.0f} jobs/s){cleaned}, enqueue_many {rates['enqueue_many'][-1]:,.0f}/s, "
                  f"plain_insert {rates['plain_insert'][-1]:,.0f}/s", flush=True)
    med = statistics.median
    cleaned = f", cleanup {med(clean):.1f} us" if clean else ""
    print(f"median: PostgreSQL CPU per job: enqueue {med(enq):.1f} us, drain {med(drain):.1f} us "
          f"(drain {med(rate):,.0f} jobs/s){cleaned}; enqueue_many {med(rates['enqueue_many']):,.0f}/s, "
          f"plain_insert {med(rates['plain_insert']):,.0f}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
