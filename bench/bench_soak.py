"""Soak bench: one `worker run` (default settings) on a throwaway cluster with stock settings (autovacuum on), fed by
a producer at a fixed share of the drain rate measured right before it (and measured again after it), with cleanup
every minute on a one-minute retention. Every `--interval` seconds it prints throughput, backlog, oldest due job,
table and index sizes, dead rows, autovacuum runs, daemon restarts, `job.lease_lost` lines, the longest cleanup
delay (start minus due), of the cleanup jobs that finished in the interval the longest run time, the jobs they
deleted and their number (a run is a chain of short pieces, worker/builtin/cleanup.py), the `cleanup.behind`
warnings (a cleanup that could not delete all it should within its time budget), and the share of half-second
samples with a cleanup statement running, the autovacuum workers' CPU seconds, the machine's 1-minute load average
(other processes' load shows there: the VM may be shared), and who used the CPU (PostgreSQL, the producer's and the
monitor's backends, the daemon, this process; the machine's busy and stolen shares), which the drain prints for its
own span too, and what one walk of the claim index's head for 1,000 jobs reads and takes; after the soak, each of
issue 25's targets met or not (bench/soak_verdict.py).

`--burst`: drain `--burst-jobs` jobs from an empty table, then the same burst inserted into a table holding
`--burst-finished` finished jobs (with their ledger rows) whose statistics were taken before the burst; prints
both drain rates. Figures only: a benchmark never fails on speed.

    python -m bench.bench_soak --minutes 10 --shares 0.5,0.8
    python -m bench.bench_soak --minutes 6 --rate 5857     # a fixed offered rate: before/after comparisons
    python -m bench.bench_soak --burst
    python -m bench.bench_soak --minutes 4 --rate 28000 --statements   # where the server's time goes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from pydantic import TypeAdapter, ValidationError

from bench import pg_statements
from bench.soak_daemon import FINISHED, PENDING, Daemon, drain, reset
from bench.soak_meters import CpuMeter, Sampler, cores
from bench.soak_verdict import Report, verdict
from worker import db, queue
from worker.cli.pgcluster import Cluster, throwaway_cluster
from worker.migrate import migrate
from worker.queue import NewJob
from worker.settings import Settings

USER, PASSWORD, DBNAME = "soak", "soak-Pa55word", "soak"

_LEDGER = "SELECT last_value FROM job_runs_id_seq"
_REPORT = """
SELECT (SELECT count(*) FROM job_queue WHERE status = 'pending' AND run_at <= now()) AS backlog,
       (SELECT coalesce(extract(epoch FROM now() - min(run_at)), 0) FROM job_queue
        WHERE status = 'pending' AND run_at <= now()) AS oldest_s,
       pg_total_relation_size('job_queue') AS queue_bytes, pg_total_relation_size('job_runs') AS runs_bytes,
       (SELECT sum(n_dead_tup) FROM pg_stat_user_tables WHERE relname IN ('job_queue', 'job_runs')) AS dead,
       (SELECT sum(autovacuum_count) FROM pg_stat_user_tables WHERE relname IN ('job_queue', 'job_runs')) AS av,
       c.*
FROM (
    -- One scan of job_queue for the cleanup jobs (no index serves task_type), not a scan per figure
    -- (docs/performance.md, "Issue 25, fifth round").
    SELECT max(extract(epoch FROM started_at - greatest(created_at, run_at)))
               FILTER (WHERE started_at > now() - make_interval(secs => $1)) AS cleanup_delay_s,
           count(*) FILTER (WHERE finished_at > now() - make_interval(secs => $1)) AS cleanup_jobs,
           max(extract(epoch FROM finished_at - started_at))
               FILTER (WHERE finished_at > now() - make_interval(secs => $1)) AS cleanup_s,
           sum((result->>'jobs')::bigint) FILTER (WHERE finished_at > now() - make_interval(secs => $1)) AS cleaned
    FROM job_queue WHERE task_type = 'cleanup'
) AS c"""


# The claim index's head as a claim of 1,000 jobs walks it (job_queue_pick's walk, without its locks): between
# two vacuums of job_queue the entries of the jobs claimed since the last one stay in the index, and every claim
# steps over their pages (docs/maintenance.md, "The head of the claim index between vacuums").
_WALK = """
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT id FROM job_queue WHERE status = 'pending' AND run_at <= now() ORDER BY priority DESC, run_at, id LIMIT 1000"""


async def _claim_walk(conn: asyncpg.Connection) -> str:
    """Buffers and milliseconds of one walk of the claim index's head for 1,000 due jobs."""
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_sort = off")  # as job_queue_pick
        plan = (await conn.fetchval(_WALK))[0]  # worker.db's connections decode json
    top = plan["Plan"]
    return f"{top['Shared Hit Blocks'] + top['Shared Read Blocks']:,} / {plan['Execution Time']:.1f}"


def _allow_password(cluster: Cluster) -> None:
    """Make the soak role authenticate with its password (SCRAM), as in production; others stay on trust."""
    hba = cluster.datadir / "pg_hba.conf"
    hba.write_text(f"host all {USER} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())


async def _prepare(cluster: Cluster) -> str:
    admin = await asyncpg.connect(cluster.url())
    try:
        await admin.execute(f"CREATE ROLE {USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        await admin.execute(f"CREATE DATABASE {DBNAME} OWNER {USER}")
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()
    url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{cluster.port}/{DBNAME}"
    conn = await db.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def _produce(url: str, rate: float, stop: asyncio.Event, meter: CpuMeter) -> None:
    conn = await db.connect(url)
    meter.producer_backend = conn.get_server_pid()
    try:
        started, made = time.monotonic(), 0
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate) - made
            if due > 0:
                await queue.enqueue_many(conn, [NewJob("noop") for _ in range(due)])
                made += due
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def _mb(n: Any) -> str:
    return f"{int(n or 0) / 2**20:.0f}"


async def _soak(
    url: str, workdir: Path, share: float, drain_rate: float, args: argparse.Namespace, postmaster: int
) -> None:
    rate = share * drain_rate
    if args.rate:
        print(f"\n## soak at a fixed rate: {rate:,.0f} jobs/s offered, {args.minutes:g} min")
    else:
        print(f"\n## soak at {share:.0%} of the drain rate: {rate:,.0f} jobs/s offered, {args.minutes:g} min")
    print("| t (s) | done/s | backlog | oldest due (s) | job_queue MB | job_runs MB | dead rows | autovacuums "
          "| restarts | lease_lost | cleanup delay (s) | cleanup took (s) | cleaned jobs "
          "| cleanup jobs | cleanup.behind | cleanup active | autovacuum CPU s | load 1m "
          "| cores: PostgreSQL (producer's backend, monitor's) | daemon | bench | machine busy (stolen) "
          "| claim walk (buffers / ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    conn = await db.connect(url, app="bench-monitor")
    # No JIT for the monitor: its report is costed high on large tables, and compiling it took more CPU than
    # running it.
    await conn.execute("SET jit = off")
    extra = {name: str(value) for name, value in (
        ("WORKER_CLEANUP_DUTY_CYCLE_PERCENT", args.cleanup_duty_cycle_percent),
        ("WORKER_CLEANUP_SPREAD_S", args.cleanup_spread_s)) if value is not None}
    daemon = Daemon(url, workdir / f"soak-{share}", cleanup=True, extra_env=extra)
    daemon.log.parent.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    sampler = Sampler()
    meter = CpuMeter(postmaster)
    meter.monitor_backend = conn.get_server_pid()
    if args.statements:
        await pg_statements.enable(conn)
    # Jobs done: ledger rows written, read from job_runs' identity sequence between two reports. Counting the
    # succeeded rows of the interval read every one of them, about a second of the monitor's CPU per report.
    # Divided by the time between the two readings, not the nominal interval: a report that runs late (its
    # scans take a second or more on large tables) leaves the next interval short.
    ledger_rows, ledger_at = int(await conn.fetchval(_LEDGER)), time.monotonic()
    daemon.start()
    producer = asyncio.create_task(_produce(url, rate, stop, meter))
    started = time.monotonic()
    end = started + args.minutes * 60
    reports: list[Report] = []
    try:
        next_report = started + args.interval
        while time.monotonic() < end:
            daemon.keep_alive()
            if producer.done():
                producer.result()
            await sampler.sample(conn)
            if time.monotonic() >= next_report:
                ledger, now = int(await conn.fetchval(_LEDGER)), time.monotonic()
                done_per_s = (ledger - ledger_rows) / (now - ledger_at)
                ledger_rows, ledger_at = ledger, now
                r = await conn.fetchrow(_REPORT, float(args.interval))
                walk = await _claim_walk(conn)
                active, vacuum_s = sampler.take()
                cpu = meter.take(daemon.proc)
                delay = "-" if r["cleanup_delay_s"] is None else f"{float(r['cleanup_delay_s']):.1f}"
                took = "-" if r["cleanup_s"] is None else f"{float(r['cleanup_s']):.1f}"
                cleaned = "-" if r["cleaned"] is None else f"{int(r['cleaned']):,}"
                t = now - started
                reports.append(Report(
                    t, done_per_s, float(r["oldest_s"]),
                    (int(r["queue_bytes"]) + int(r["runs_bytes"])) / 2**20, daemon.restarts,
                    daemon.count("job.lease_lost"),
                    None if r["cleanup_delay_s"] is None else float(r["cleanup_delay_s"])))
                print(f"| {t:.0f} | {done_per_s:,.0f} "
                      f"| {int(r['backlog']):,} | {float(r['oldest_s']):.1f} | {_mb(r['queue_bytes'])} "
                      f"| {_mb(r['runs_bytes'])} | {int(r['dead'] or 0):,} | {int(r['av'] or 0)} "
                      f"| {daemon.restarts} | {daemon.count('job.lease_lost')} | {delay} | {took} | {cleaned} "
                      f"| {int(r['cleanup_jobs'])} "
                      f"| {daemon.count('cleanup.behind')} | {active:.0%} | {vacuum_s:.1f} "
                      f"| {os.getloadavg()[0]:.1f} | {cores(cpu)} | {walk} |",
                      flush=True)
                next_report += args.interval
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(producer, return_exceptions=True)
        daemon.stop()
        print("\ntargets:\n" + "\n".join(f"- {line}" for line in verdict(reports, rate, args.interval)))
        if args.statements:
            print(f"\nstatements of this soak (pg_stat_statements):\n{await pg_statements.report(conn)}", flush=True)
        await reset(conn)
        await conn.close()


async def _burst_pair(url: str, workdir: Path, args: argparse.Namespace) -> tuple[float, float]:
    """One drain of the burst into an empty table, then one into a mature table with stale statistics."""
    conn = await db.connect(url)
    try:
        await reset(conn)
        await conn.execute("ANALYZE job_queue")
        await _settle(conn)
        await conn.execute(PENDING, args.burst_jobs)
        empty = await drain(conn, Daemon(url, workdir / "burst-empty", cleanup=False), args.burst_jobs)
        await reset(conn)
        await _settle(conn)
        await conn.execute(FINISHED, args.burst_finished)
        # A table that has held its finished jobs a while has been vacuumed since: without this, autovacuum's
        # pass over the fill (a million rows in each table) lands in the burst's few seconds or not, by chance.
        await conn.execute("VACUUM job_queue")
        await conn.execute("VACUUM job_runs")
        await conn.execute("ANALYZE job_queue")  # statistics of a mature table, taken before the burst
        await conn.execute("ANALYZE job_runs")
        await conn.execute(PENDING, args.burst_jobs)
        mature = await drain(conn, Daemon(url, workdir / "burst-mature", cleanup=False), args.burst_jobs)
    finally:
        await conn.close()
    return empty, mature


async def _burst(url: str, workdir: Path, args: argparse.Namespace) -> None:
    print(f"\n## burst of {args.burst_jobs:,} jobs (no ANALYZE after the burst), {args.burst_runs} pair(s)")
    print(f"| pair | empty table (jobs/s) | {args.burst_finished:,} finished jobs, statistics taken before the burst "
          "(jobs/s) | ratio |\n|---|---|---|---|")
    ratios = []
    for n in range(args.burst_runs):  # alternating: a drift of the machine's speed falls on both cases
        empty, mature = await _burst_pair(url, workdir, args)
        ratios.append(mature / empty)
        print(f"| {n + 1} | {empty:,.0f} | {mature:,.0f} | {ratios[-1]:.2f}x |", flush=True)
    print(f"median ratio: {statistics.median(ratios):.2f}x")


async def main(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with throwaway_cluster(pg_statements.SETTINGS if args.statements else None) as cluster:
        _allow_password(cluster)
        url = await _prepare(cluster)
        postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
        settings = "stock settings and pg_stat_statements preloaded" if args.statements else "stock settings"
        print(f"# soak bench: throwaway cluster with {settings} on port {cluster.port}, "
              f"PostgreSQL {await _version(url)}, one `worker run` with default settings, noop jobs")
        if args.burst:
            await _burst(url, workdir, args)
            return
        if args.rate:  # a fixed offered rate: no drain measurement, one soak
            await _soak(url, workdir, 1.0, args.rate, args, postmaster)
            return
        for share in args.shares:  # the drain right before each soak: the machine's speed drifts
            drain_rate = await _drain_rate(url, workdir, args, postmaster, "before")
            await _soak(url, workdir, share, drain_rate, args, postmaster)
            after = await _drain_rate(url, workdir, args, postmaster, "after")
            print(f"offered {share * drain_rate:,.0f} jobs/s: {share * drain_rate / after:.0%} of the drain after")


async def _settle(conn: asyncpg.Connection) -> None:
    """Write out the server's dirty buffers and the machine's dirty pages before a drain's fill: after a soak or
    a mature burst, its checkpoint and the file system's writeback of the truncated tables would otherwise land
    in the drain. Before the fill, not between it and the drain: a checkpoint there would make the drain write
    every page's first change whole into the WAL, which the fill did."""
    await conn.execute("CHECKPOINT")
    os.sync()


async def _drain_rate(url: str, workdir: Path, args: argparse.Namespace, postmaster: int, when: str) -> float:
    """The median of `--drain-runs` drains, each filled after `_settle`."""
    conn = await db.connect(url)
    rates = []
    try:
        for _ in range(args.drain_runs):
            await _settle(conn)
            await conn.execute(PENDING, args.drain_jobs)
            rates.append(await drain(conn, Daemon(url, workdir / "drain", cleanup=False), args.drain_jobs,
                                      CpuMeter(postmaster)))
            await reset(conn)
    finally:
        await conn.close()
    print(f"drain rate {when} ({args.drain_jobs:,} jobs, empty table): {statistics.median(rates):,.0f} jobs/s, "
          f"the median of {', '.join(f'{r:,.0f}' for r in rates)}")
    return statistics.median(rates)


async def _version(url: str) -> str:
    conn = await db.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bench_soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of each soak (default 10)")
    p.add_argument("--shares", default="0.5,0.8", help="offered rates as shares of the drain rate")
    p.add_argument("--rate", type=float, default=None,
                   help="offer this many jobs/s instead of shares of a measured drain rate (one soak)")
    p.add_argument("--statements", action="store_true",
                   help="preload pg_stat_statements (not a stock setting) and print each soak's top statements")
    p.add_argument("--cleanup-duty-cycle-percent", type=float, default=None,
                   help="WORKER_CLEANUP_DUTY_CYCLE_PERCENT for the soak's daemon (default: the setting's default)")
    p.add_argument("--cleanup-spread-s", type=float, default=None,
                   help="WORKER_CLEANUP_SPREAD_S for the soak's daemon (default: the setting's default)")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between reports (default 30)")
    p.add_argument("--drain-jobs", type=int, default=100_000, help="jobs drained to measure the drain rate")
    p.add_argument("--drain-runs", type=int, default=3, help="drains measured; the drain rate is their median")
    p.add_argument("--burst", action="store_true", help="the burst case instead of the soak")
    p.add_argument("--burst-jobs", type=int, default=100_000)
    p.add_argument("--burst-finished", type=int, default=1_000_000)
    p.add_argument("--burst-runs", type=int, default=3,
                   help="burst pairs (empty, then mature), alternating; the ratio reported is their median")
    p.add_argument("--workdir", default=os.path.join("bench", "results", "soak"), help="daemon logs go here")
    args = p.parse_args(argv)
    try:
        args.shares = [float(s) for s in args.shares.split(",")]
    except ValueError:
        p.error(f"--shares: not a comma-separated list of numbers: {args.shares!r}")
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be positive")
    if not all(0 < s <= 2 for s in args.shares) or args.minutes <= 0 or args.interval <= 0:
        p.error("--shares must be in (0, 2], --minutes and --interval positive")
    # Checked here against the daemon's own field, not left to the daemon: a setting it refuses would only show
    # as restarts in every row.
    for field in ("cleanup_duty_cycle_percent", "cleanup_spread_s"):
        value = getattr(args, field)
        try:
            if value is not None:
                TypeAdapter(Annotated[float, Settings.model_fields[field]]).validate_python(value)
        except ValidationError as exc:
            p.error(f"--{field.replace('_', '-')} must be in the daemon's range: {exc.errors()[0]['msg']}")
    for name in ("drain_jobs", "drain_runs", "burst_jobs", "burst_finished", "burst_runs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
