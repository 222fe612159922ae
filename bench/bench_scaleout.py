"""Scale-out: 1, 2 and 4 `worker run` processes draining the same 100,000 no-op jobs from one PostgreSQL.

    python -m bench.bench_scaleout [--jobs 100000] [--processes 1 2 4] [--concurrency 10] [--runs 1]

PostgreSQL is a throwaway cluster (worker/cli/pgcluster.py: stock settings apart from the cluster helper's own
fsync=off and max_connections=100) with password authentication (scram-sha-256 over TCP, a login role with a
password in the URL, as in production). The 100,000 jobs are enqueued once into a template database; each run
drains a fresh copy (CREATE DATABASE ... TEMPLATE). Each process is exactly `worker run` with the bench's
settings (bench/sys_worker.py: HTTP and schedules off, concurrency 10) and its own WORKER_WORKER_ID; the clock
starts when every process has imported everything (bench/launch.py) and stops when no job is pending or running.

Per run it reports jobs/s in total and per process, and where the time went (psutil): CPU cores used by the
PostgreSQL server's processes, by the worker processes, and by everything else on the machine (other users),
against the machine's cores; and what active backends waited on (pg_stat_activity, sampled every 100 ms).
Nothing is asserted on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench.procs import WorkerProcess
from bench.sys_worker import REMAINING_SQL, SUCCEEDED_SQL, enqueue_noop, install
from bench.systems import System
from worker.cli.pgcluster import Cluster, throwaway_cluster

ROLE, PASSWORD = "bench_scaleout", "bench-Pa55word"
WAITS_SQL = """
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait, count(*) AS n
FROM pg_stat_activity
WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()
GROUP BY 1
"""
# Who waits for which heavyweight lock, and in which statement (the first words identify the named query).
LOCK_WAITS_SQL = """
SELECT l.locktype || ' ' || coalesce(l.relation::regclass::text, '') || ' ' || l.mode || ' by: '
       || left(regexp_replace(a.query, '\\s+', ' ', 'g'), 70) AS wait
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE NOT l.granted AND a.datname = $1
"""


def _url(cluster: Cluster, dbname: str) -> str:
    return f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{cluster.port}/{dbname}"


async def _password_auth(cluster: Cluster) -> None:
    """A login role with a password, and TCP connections that must present it (scram-sha-256)."""
    conn = await asyncpg.connect(cluster.url())
    try:
        await conn.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        hba = cluster.datadir / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    probe = await asyncpg.connect(_url(cluster, "postgres"))
    await probe.close()
    with contextlib.suppress(asyncpg.InvalidPasswordError):
        wrong = await asyncpg.connect(_url(cluster, "postgres").replace(PASSWORD, "wrong"))
        await wrong.close()
        raise RuntimeError("the cluster accepted a wrong password: the bench would not measure password auth")


def _server_procs(cluster: Cluster) -> list[psutil.Process]:
    postmaster = psutil.Process(int((cluster.datadir / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


class _Cpu:
    """CPU seconds of the server's processes, including backends that exit during the window."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.seen: dict[int, float] = {}
        self.start: dict[int, float] = {}
        self.first = True

    def sample(self) -> None:
        """Processes alive at the first sample count from there; later ones (new backends) from their start."""
        for p in _server_procs(self.cluster):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                used = t.user + t.system
                self.start.setdefault(p.pid, used if self.first else 0.0)
                self.seen[p.pid] = used
        self.first = False

    def used(self) -> float:
        return sum(self.seen[pid] - self.start[pid] for pid in self.seen)


async def _drain(
    cluster: Cluster, template: str, n_procs: int, opts: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    name = f"scaleout_{n_procs}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(cluster.url())
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    await admin.close()
    url = _url(cluster, name)
    # A clone starts with no activity statistics, so every process would run the daemon's first-start ANALYZE
    # (queue.ensure_statistics), one after another on the table's lock, inside the timed drain. Production
    # databases have statistics: give the clone its own before the clock starts.
    clone = await asyncpg.connect(url)
    await clone.execute("ANALYZE job_queue")
    await clone.close()
    system = System("worker", "worker", opts.concurrency)
    procs = []
    for i in range(n_procs):
        proc = WorkerProcess(system, url, workdir, latency_mode=False)
        proc.env["WORKER_WORKER_ID"] = f"scaleout-{n_procs}-{i}"
        procs.append(proc)
    poll = await asyncpg.connect(url)
    waits: collections.Counter[str] = collections.Counter()
    lock_waits: collections.Counter[str] = collections.Counter()
    samples = 0
    try:
        await asyncio.gather(*(p.start() for p in procs))
        server = _Cpu(cluster)
        server.sample()
        workers0 = sum(p.cpu_s() for p in procs)
        machine0 = psutil.cpu_times()
        harness0 = sum(psutil.Process().cpu_times()[:2])
        t0 = time.perf_counter()
        for p in procs:
            p.go()
        deadline = t0 + 120 + opts.jobs / 100
        next_sample = t0
        while await poll.fetchval(REMAINING_SQL):
            for p in procs:
                if p.proc is not None and p.proc.poll() is not None:
                    raise RuntimeError(f"{p.env['WORKER_WORKER_ID']} exited with {p.proc.returncode}:\n"
                                       + _problems(p.log_file))
            now = time.perf_counter()
            if now > deadline:
                raise RuntimeError(f"{n_procs} processes: drain not finished in time\n{procs[0].log_tail()}")
            if now >= next_sample:
                for row in await poll.fetch(WAITS_SQL, name):
                    waits[row["wait"]] += row["n"]
                for row in await poll.fetch(LOCK_WAITS_SQL, name):
                    lock_waits[row["wait"]] += 1
                samples += 1
                server.sample()
                next_sample = now + 0.1
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0
        server.sample()
        workers_cpu = sum(p.cpu_s() for p in procs) - workers0
        machine1 = psutil.cpu_times()
        harness_cpu = sum(psutil.Process().cpu_times()[:2]) - harness0
        succeeded = int(await poll.fetchval(SUCCEEDED_SQL))
    finally:
        await poll.close()
        codes = [await p.stop() for p in procs]
        admin = await asyncpg.connect(cluster.url())
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    busy = sum(getattr(machine1, f) - getattr(machine0, f) for f in ("user", "nice", "system", "irq", "softirq"))
    server_cpu = server.used()
    return {
        "processes": n_procs,
        "elapsed_s": elapsed,
        "jobs_per_s": opts.jobs / elapsed,
        "per_process": opts.jobs / elapsed / n_procs,
        "pg_cores": server_cpu / elapsed,
        "worker_cores": workers_cpu / elapsed,
        "other_cores": max(0.0, busy - server_cpu - workers_cpu - harness_cpu) / elapsed,
        "waits": {w: n / max(samples, 1) for w, n in waits.most_common(4)},
        "lock_waits": {w: n / max(samples, 1) for w, n in lock_waits.most_common(3)},
        "succeeded": succeeded,
        "exit_codes": codes,
    }


def _problems(log: Path) -> str:
    """The warning and error lines of a worker's log (its tail is thousands of job lines)."""
    lines = log.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if '"level":"warning"' in line or '"level":"error"' in line)[-5000:]


def _limit(row: dict[str, Any], cores: int) -> str:
    ours = row["pg_cores"] + row["worker_cores"]
    used = ours + row["other_cores"]
    pg_share = row["pg_cores"] / max(ours, 1e-9)
    side = f"PostgreSQL {pg_share:.0%} of the queue's CPU"
    if used >= 0.9 * cores:
        if row["other_cores"] > ours:
            return f"machine CPU ({used:.1f}/{cores} cores), most of it other processes; {side}"
        return f"machine CPU ({used:.1f}/{cores} cores); {side}"
    if row["worker_cores"] / row["processes"] >= 0.9:
        return "each worker process near one core (its event loop)"
    return f"no CPU saturated ({used:.1f}/{cores} cores): waits (see that column)"


def _table(rows: list[dict[str, Any]], cores: int) -> str:
    lines = [
        "| processes | jobs/s total | jobs/s per process | PostgreSQL cores | worker cores | others' cores "
        "| CPU us/job PostgreSQL + workers | active backends waiting on (mean per sample) | limit |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        waits = ", ".join(f"{w} {n:.2f}" for w, n in r["waits"].items() if n >= 0.005) or "-"
        pg_us = r["pg_cores"] / r["jobs_per_s"] * 1e6
        worker_us = r["worker_cores"] / r["jobs_per_s"] * 1e6
        lines.append(
            f"| {r['processes']} | {r['jobs_per_s']:,.0f} | {r['per_process']:,.0f} | {r['pg_cores']:.2f} "
            f"| {r['worker_cores']:.2f} | {r['other_cores']:.2f} | {pg_us:.0f} + {worker_us:.0f} | {waits} "
            f"| {_limit(r, cores)} |"
        )
    return "\n".join(lines)


async def _main(opts: argparse.Namespace) -> int:
    cores = psutil.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    with throwaway_cluster() as cluster, tempfile.TemporaryDirectory(prefix="scaleout-") as tmp:
        await _password_auth(cluster)
        template = "scaleout_template"
        admin = await asyncpg.connect(cluster.url())
        await admin.execute(f'CREATE DATABASE "{template}"')
        await admin.close()
        await install(_url(cluster, template))
        t = time.perf_counter()
        await enqueue_noop(_url(cluster, template), opts.jobs, 5000)
        print(f"enqueued {opts.jobs:,} jobs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        conn = await asyncpg.connect(cluster.url(template))
        await conn.execute("VACUUM ANALYZE job_queue")
        version = await conn.fetchval("SHOW server_version")
        await conn.close()
        for run in range(opts.runs):
            for n in opts.processes:
                row = await _drain(cluster, template, n, opts, Path(tmp))
                if row["succeeded"] != opts.jobs or any(c != 0 for c in row["exit_codes"]):
                    print(f"run {run + 1}, {n} processes: {row['succeeded']} succeeded, exit codes "
                          f"{row['exit_codes']}", file=sys.stderr)
                    return 1
                print(f"run {run + 1}: {n} processes {row['jobs_per_s']:,.0f} jobs/s", file=sys.stderr)
                rows.append(row)
    merged = []
    for n in opts.processes:
        mine = [r for r in rows if r["processes"] == n]
        best = sorted(mine, key=lambda r: r["jobs_per_s"])[len(mine) // 2]  # the median run, all its columns
        merged.append(best)
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {opts.jobs:,} no-op jobs, concurrency "
          f"{opts.concurrency} per process, median of {opts.runs} run(s); PostgreSQL {version} (throwaway "
          f"cluster, password auth); {cores} cores, {platform.machine()}, Python {platform.python_version()}, "
          f"1-minute load average at the end {os.getloadavg()[0]:.1f}")
    print(_table(merged, cores))
    every = "; ".join(
        f"{n}: " + ", ".join(f"{r['jobs_per_s']:,.0f}" for r in rows if r["processes"] == n) for n in opts.processes
    )
    print(f"\nEvery run's jobs/s by processes, in run order: {every}")
    for r in merged:
        locks = "; ".join(f"{w} ({n:.2f})" for w, n in r["lock_waits"].items()) or "none sampled"
        print(f"{r['processes']} processes, heavyweight lock waits (mean waiting per sample): {locks}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_scaleout", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1)
    opts = parser.parse_args(argv)
    if opts.jobs < 1 or opts.runs < 1 or opts.concurrency < 1 or min(opts.processes) < 1:
        parser.error("--jobs, --runs, --concurrency and --processes must be positive")
    return asyncio.run(_main(opts))


if __name__ == "__main__":
    sys.exit(main())
