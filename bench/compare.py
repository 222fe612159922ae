"""`python -m bench.compare`: worker vs a raw-SQL ceiling vs pgqueuer vs procrastinate, side by side.

Each system runs on one PostgreSQL (by default a throwaway cluster with stock settings whose role logs in with a
password, as production does), one after another (the drains in rounds: one run of every system, then the
next), each measurement on a fresh database with the system's own schema; each worker under test is one
separate OS process. Then batch enqueue side by side (bench/enqueue.py), in rounds too. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Coroutine
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench import enqueue
from bench.measure import Options, drain_once, idle_and_latency, password_server
from bench.report import enqueue_table, summarize, table, targets
from bench.systems import SYSTEMS, installed

__all__ = ["main"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, help="no-op jobs per drain run (default 20000; --quick 2000)")
    p.add_argument("--jobs-c100", type=int,
                   help="no-op jobs per drain run at concurrency 100 (default 100000, or --jobs when given)")
    p.add_argument("--runs", type=int, help="drain runs per system (default 5; --quick 1)")
    p.add_argument("--latency-jobs", type=int, help="single jobs for wake-up latency (default 200; --quick 50)")
    p.add_argument("--latency-interval-ms", type=float, default=20.0, help="gap between latency jobs")
    p.add_argument("--idle-s", type=float, help="idle-cost window in seconds (default 60; --quick 5)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {', '.join(SYSTEMS)}")
    p.add_argument("--quick", action="store_true", help="small sizes, for a fast look")
    p.add_argument(
        "--server-url", default=os.environ.get("BENCH_SERVER_URL"),
        help="a PostgreSQL URL (maintenance database) on which the harness may CREATE/DROP DATABASE (default: a "
             "throwaway cluster with stock settings and a password-authenticated role)",
    )
    p.add_argument("--enqueue-batch", type=int, default=1000, help="jobs per batch-enqueue call")
    p.add_argument("--enqueue-jobs", type=int,
                   help="jobs per run of the batch-enqueue comparison (default 20000; --quick 2000; 0: skip it)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON results go")
    return p


def _options(args: argparse.Namespace, workdir: Path, server_url: str) -> Options:
    quick = args.quick

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else full)

    jobs = pick(args.jobs, 20000, 2000)
    return Options(
        server_url=server_url,
        jobs=jobs,
        jobs_c100=pick(args.jobs_c100, jobs if args.jobs is not None else 100000, 2000),
        runs=pick(args.runs, 5, 1),
        latency_jobs=pick(args.latency_jobs, 200, 50),
        latency_interval_s=args.latency_interval_ms / 1000,
        idle_s=pick(args.idle_s, 60.0, 5.0),
        settle_s=1.0 if quick else 2.0,
        enqueue_batch=args.enqueue_batch,
        poll_s=0.02,
        workdir=workdir,
    )


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("worker", "asyncpg", "pgqueuer", "procrastinate", "psycopg", "uvloop"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


async def _server_info(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        return {
            "server_version": await conn.fetchval("SHOW server_version"),
            "synchronous_commit": await conn.fetchval("SHOW synchronous_commit"),
            "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
        }
    finally:
        await conn.close()


async def _enqueue_rounds(opts: Options, jobs: int) -> dict[str, list[dict[str, Any]]]:
    """Batch enqueue of `jobs` no-op jobs by each enqueuer, in rounds like the drains."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in enqueue.available()}
    for i in range(opts.runs):
        print(f"== enqueue round {i + 1}/{opts.runs}", flush=True)
        for name, runs in out.items():
            run = await enqueue.enqueue_once(opts.server_url, name, jobs, opts.enqueue_batch)
            runs.append(run)
            print(f"   {name}: {run['per_s']:,.0f} jobs/s", flush=True)
    return out


async def _run(opts: Options, names: list[str]) -> list[dict[str, Any]]:
    """The drains in rounds (run 1 of every system, then run 2, ...): this VM's speed drifts by 20-30% within
    minutes, and a system measured only at a slow or a fast moment would carry that into its ratios. Then the
    latency jobs, split over as many rounds the same way (the first round also measures the idle cost)."""
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        system = SYSTEMS[name]
        results[name] = {"system": name, "note": system.note, "concurrency": system.concurrency,
                         "batch_size": system.batch_size, "drain": []}
    for i in range(opts.runs):
        print(f"== drain round {i + 1}/{opts.runs}", flush=True)
        for name in names:
            raw = results[name]
            if "error" in raw or (run := await _attempt(raw, drain_once(SYSTEMS[name], opts))) is None:
                continue
            raw["drain"].append(run)
            print(f"   {name}: {run['jobs']:,} jobs, enqueue {run['enqueue_per_s']:,.0f}/s, "
                  f"drain {run['drain_per_s']:,.0f} jobs/s, "
                  f"cpu {run['cpu_ms_per_1k']:.0f} ms/1k jobs, succeeded {run['succeeded']}/{run['jobs']}",
                  flush=True)
    # The latency jobs in rounds too, each round a fresh process per system; the first also measures idle cost.
    parts = [opts.latency_jobs // opts.runs + (i < opts.latency_jobs % opts.runs) for i in range(opts.runs)]
    for i, part in enumerate(parts):
        print(f"== idle and latency round {i + 1}/{opts.runs}{' (with the idle window)' * (i == 0)}", flush=True)
        for name in names:
            raw = results[name]
            if "error" in raw:
                continue
            got = await _attempt(raw, idle_and_latency(SYSTEMS[name], opts, idle=i == 0, latency_jobs=part))
            if got is None:
                continue
            if i == 0:
                raw["idle"] = got
            else:
                raw["idle"]["latencies_s"] += got["latencies_s"]
                raw["idle"]["rss_peak"] = max(raw["idle"]["rss_peak"], got["rss_peak"])
            idle = raw["idle"]
            extra = f"idle {idle['idle_tx_per_s']:.2f} tx/s, {idle['idle_cpu_s_per_min']:.3f} CPU s/min; " * (i == 0)
            print(f"   {name}: {extra}{len(got['latencies_s'])} latency samples", flush=True)
    return list(results.values())


async def _attempt(raw: dict[str, Any], measure: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any] | None:
    """One measurement of a system; a failure is recorded on it (None), and its later rounds are skipped."""
    try:
        return await measure
    except Exception as exc:
        raw["error"] = f"{type(exc).__name__}: {exc}"
        print(f"   {raw['system']}: FAILED: {raw['error']}", flush=True)
        return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        print(f"bench.compare: error: unknown system(s) {', '.join(unknown) or '(none)'}; "
              f"choose from {', '.join(SYSTEMS)}", file=sys.stderr)
        return 2
    missing = [n for n in names if not installed(SYSTEMS[n].kind)]
    if missing:
        print(f"bench.compare: skipping {', '.join(missing)} (not installed: pip install -e '.[bench]')",
              file=sys.stderr)
        names = [n for n in names if n not in missing]
    started = dt.datetime.now(dt.UTC)
    enqueue_jobs = args.enqueue_jobs if args.enqueue_jobs is not None else (2000 if args.quick else 20000)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        server_url = args.server_url or stack.enter_context(password_server())
        opts = _options(args, Path(tmp), server_url)
        print(f"bench.compare: jobs={opts.jobs} (concurrency 100: {opts.jobs_c100}) runs={opts.runs} "
              f"latency_jobs={opts.latency_jobs} idle_s={opts.idle_s:g} systems={','.join(names)} "
              f"server={'--server-url' if args.server_url else 'throwaway cluster, password (SCRAM)'}", flush=True)
        t0 = time.perf_counter()
        server = asyncio.run(_server_info(opts.server_url))
        server["password_in_url"] = urlsplit(server_url).password is not None
        raws = asyncio.run(_run(opts, names))
        enqueues = asyncio.run(_enqueue_rounds(opts, enqueue_jobs)) if enqueue_jobs > 0 else {}
        elapsed = time.perf_counter() - t0
    summaries = [summarize(r) for r in raws]
    report = {
        "started_at": started.isoformat(),
        "elapsed_s": elapsed,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_end": os.getloadavg()},
        "server": server,
        "versions": _versions(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()
                    if k not in ("server_url", "workdir")},
        "summaries": summaries,
        "raw": raws,
        "enqueue": enqueues,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print()
    print(f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, PostgreSQL {server['server_version']}, "
          f"{opts.jobs} jobs ({opts.jobs_c100} at concurrency 100) x {opts.runs} runs, {opts.latency_jobs} latency "
          f"jobs, idle {opts.idle_s:g}s")
    print(table(summaries))
    if enqueues:
        print()
        print(f"batch enqueue, {enqueue_jobs:,} jobs in calls of {opts.enqueue_batch:,}, {opts.runs} rounds:")
        print(enqueue_table(enqueues))
    for line in targets(summaries, raws, enqueues):
        print(line)
    print(f"results: {out}")
    return 1 if any(s.get("error") for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
