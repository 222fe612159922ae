"""The measurements of one system: drain throughput (one run) and wake-up latency + idle cost + memory."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from bench.procs import WorkerProcess
from bench.systems import System, adapter
from worker.cli.pgcluster import throwaway_cluster

__all__ = ["Options", "drain_once", "fresh_database", "idle_and_latency", "password_server"]

BENCH_USER, BENCH_PASSWORD = "bench", "bench-Pa55/word"  # '/' percent-encoded in the URL, as real ones often are

XACTS_SQL = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1"
WARMUP_JOBS = 5
STATS_SETTLE_S = 11.0


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str
    jobs: int
    jobs_c100: int
    runs: int
    latency_jobs: int
    latency_interval_s: float
    idle_s: float
    settle_s: float
    enqueue_batch: int
    poll_s: float
    workdir: Path


    def jobs_for(self, system: System) -> int:
        """Drains at concurrency 100 take more jobs: 20,000 drain there in under a second."""
        return self.jobs_c100 if system.concurrency >= 100 else self.jobs


@contextlib.contextmanager
def password_server() -> Iterator[str]:
    """A throwaway cluster with stock settings (fsync on, as a real server; the throwaway default is off) whose
    bench role logs in with a password over SCRAM, as production does: every system's URL carries it, so
    `worker` runs with a secret to redact. Yields the maintenance database's URL."""
    with throwaway_cluster({"fsync": "on"}) as cluster:
        hba = cluster.datadir / "pg_hba.conf"
        hba.write_text(f"host all {BENCH_USER} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        asyncio.run(_create_role(cluster.url()))
        yield f"postgresql://{BENCH_USER}:{quote(BENCH_PASSWORD, safe='')}@127.0.0.1:{cluster.port}/postgres"


async def _create_role(url: str) -> None:
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"SET password_encryption = 'scram-sha-256'; CREATE ROLE {BENCH_USER} LOGIN SUPERUSER "
                            f"PASSWORD '{BENCH_PASSWORD}'")
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()


def _db_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@asynccontextmanager
async def fresh_database(server_url: str, label: str) -> AsyncIterator[tuple[str, str]]:
    """A new, empty database of its own; dropped afterwards. Yields (name, url)."""
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name, _db_url(server_url, name)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def drain_once(system: System, opts: Options) -> dict[str, Any]:
    """Enqueue opts.jobs_for(system) no-op jobs with the batch API, then time one worker process draining them."""
    mod = adapter(system.kind)
    jobs = opts.jobs_for(system)
    async with fresh_database(opts.server_url, system.name) as (_, dsn):
        await mod.install(dsn)
        t = time.perf_counter()
        await mod.enqueue_noop(dsn, jobs, opts.enqueue_batch)
        enqueue_s = time.perf_counter() - t
        proc = WorkerProcess(system, dsn, opts.workdir, latency_mode=False)
        poll = await asyncpg.connect(dsn)
        try:
            await proc.start()
            rss_ready = proc.rss()
            cpu0 = proc.cpu_s()
            t0 = time.perf_counter()
            proc.go()
            deadline = t0 + 60 + jobs / 50
            while await poll.fetchval(mod.REMAINING_SQL):
                proc.check_alive()
                proc.rss()
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{system.name}: drain not finished in time\n{proc.log_tail()}")
                await asyncio.sleep(opts.poll_s)
            drain_s = time.perf_counter() - t0
            cpu_s = proc.cpu_s() - cpu0
            peak = proc.peak_rss()
            succeeded = await poll.fetchval(mod.SUCCEEDED_SQL)
        finally:
            await poll.close()
            exit_code = await proc.stop()
    return {
        "jobs": jobs,
        "enqueue_s": enqueue_s,
        "enqueue_per_s": jobs / enqueue_s,
        "drain_s": drain_s,
        "drain_per_s": jobs / drain_s,
        "cpu_s": cpu_s,
        "cpu_ms_per_1k": cpu_s * 1000 / (jobs / 1000),
        "rss_ready": rss_ready,
        "rss_peak": peak,
        "succeeded": int(succeeded),
        "exit_code": exit_code,
    }


async def _wait_latencies(proc: WorkerProcess, count: int, timeout_s: float) -> list[float]:
    deadline = time.monotonic() + timeout_s
    while len(found := proc.latencies()) < count:
        proc.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.system.name}: {len(found)} of {count} latency jobs ran\n{proc.log_tail()}")
        await asyncio.sleep(0.02)
    return found


async def _xacts(server_url: str, name: str) -> int:
    admin = await asyncpg.connect(server_url)
    try:
        return int(await admin.fetchval(XACTS_SQL, name))
    finally:
        await admin.close()


async def idle_and_latency(
    system: System, opts: Options, *, idle: bool = True, latency_jobs: int | None = None
) -> dict[str, Any]:
    """One worker process, idle and listening: its idle cost over opts.idle_s (unless `idle` is false), then
    `latency_jobs` (default opts.latency_jobs) single-job latencies."""
    jobs = opts.latency_jobs if latency_jobs is None else latency_jobs
    mod = adapter(system.kind)
    async with fresh_database(opts.server_url, system.name) as (name, dsn):
        await mod.install(dsn)
        proc = WorkerProcess(system, dsn, opts.workdir, latency_mode=True)
        try:
            await proc.start()
            proc.go()
            await asyncio.sleep(opts.settle_s)
            enq = await mod.LatencyEnqueuer.open(dsn)
            try:
                for _ in range(WARMUP_JOBS):
                    await enq.enqueue(time.time())
                    await asyncio.sleep(opts.latency_interval_s)
                await _wait_latencies(proc, WARMUP_JOBS, 30)
            finally:
                await enq.close()
            if idle:
                # A backend that was busy less than 1 s after its last report defers the next one for up to
                # 10 s (PostgreSQL 15's PGSTAT_IDLE_INTERVAL): let the warm-up's transactions land first.
                await asyncio.sleep(STATS_SETTLE_S if opts.idle_s >= 10 else 1.5)
                # The idle window: nothing but the worker is connected to this database.
                x0, c0, t0 = await _xacts(opts.server_url, name), proc.cpu_s(), time.perf_counter()
                await asyncio.sleep(opts.idle_s)
                x1, c1, t1 = await _xacts(opts.server_url, name), proc.cpu_s(), time.perf_counter()
            rss_idle = proc.rss()
            enq = await mod.LatencyEnqueuer.open(dsn)
            try:
                base = len(proc.latencies())
                tick = time.perf_counter()
                for _ in range(jobs):
                    await enq.enqueue(time.time())
                    # The next job 20 ms after this one was due, or at once if this enqueue outlasted that: after
                    # a stall (one enqueue on this shared VM took 0.76 s) the harness does not catch up
                    # with a burst of back-to-back jobs, which measured the burst, not single wake-ups.
                    tick = max(tick + opts.latency_interval_s, time.perf_counter())
                    await asyncio.sleep(max(0.0, tick - time.perf_counter()))
                found = await _wait_latencies(proc, base + jobs, 30)
            finally:
                await enq.close()
            peak = proc.peak_rss()
        finally:
            exit_code = await proc.stop()
    result: dict[str, Any] = {
        "rss_idle": rss_idle,
        "rss_peak": peak,
        "latencies_s": found[base : base + jobs],
        "exit_code": exit_code,
    }
    if idle:
        window = t1 - t0
        result.update({
            "idle_window_s": window,
            "idle_xacts": x1 - x0,
            "idle_tx_per_s": (x1 - x0) / window,
            "idle_cpu_s": c1 - c0,
            "idle_cpu_s_per_min": (c1 - c0) * 60 / window,
        })
    return result
