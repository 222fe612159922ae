"""CPU per job of each system's worker process: `python -m bench.cpu_per_job [--jobs 100000] [--runs 3]
[--systems worker100,ceiling100]`.

The drains of bench.compare alone (bench.measure.drain_once: a fresh database per run, the no-op jobs enqueued
first, one worker process draining them), in interleaved rounds on one throwaway cluster whose URLs carry a
password, printing the worker process's CPU time (user + system) per 1,000 jobs. CPU time is steadier than
wall time on a shared machine; the ratio of medians from one run is the figure to read.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import Options, drain_once, password_server
from bench.systems import SYSTEMS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.cpu_per_job")
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--systems", default="worker100,ceiling100")
    args = p.parse_args(argv)
    names = args.systems.split(",")
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with password_server() as url, tempfile.TemporaryDirectory(prefix="bench-cpu") as work:
        opts = Options(server_url=url, jobs=args.jobs, jobs_c100=args.jobs, runs=args.runs, latency_jobs=0,
                       latency_interval_s=0.02, idle_s=0, settle_s=0, enqueue_batch=1000, poll_s=0.02,
                       workdir=Path(work))
        for i in range(args.runs):
            for name in names:
                run = asyncio.run(drain_once(SYSTEMS[name], opts))
                runs[name].append(run)
                print(f"round {i + 1} {name}: drain {run['drain_per_s']:,.0f} jobs/s, cpu {run['cpu_ms_per_1k']:.1f} "
                      f"ms/1k jobs, succeeded {run['succeeded']}/{run['jobs']}", flush=True)
    medians = {n: statistics.median(r["cpu_ms_per_1k"] for r in runs[n]) for n in names}
    for name in names:
        cpus = ", ".join(f"{r['cpu_ms_per_1k']:.1f}" for r in runs[name])
        print(f"{name}: cpu ms/1k jobs median {medians[name]:.1f} [{cpus}], x {names[-1]} "
              f"{medians[name] / medians[names[-1]]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
