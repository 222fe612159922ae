"""What the soak bench (bench/bench_soak.py) measures besides the queue: who used the CPU between two reports,
and, sampled every half second, cleanup's duty cycle in place and the autovacuum workers' CPU."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import asyncpg

from bench.procs import cluster_cpu_s

__all__ = ["CpuMeter", "Sampler", "cores"]

_SAMPLE = """
SELECT count(*) FILTER (WHERE state = 'active' AND query LIKE '%doomed AS%' AND pid <> pg_backend_pid()) AS cleaning,
       array_agg(pid) FILTER (WHERE backend_type = 'autovacuum worker') AS vacuums
FROM pg_stat_activity"""
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def _machine_s() -> tuple[float, float, float]:
    """(busy, stolen, all) CPU seconds of every CPU since boot, from /proc/stat's first line."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK, (
        user + nice + system + idle + iowait + irq + softirq + steal) / _TICK


class CpuMeter:
    """Who used the CPU between two takes, in cores: PostgreSQL (every process of the cluster, exited backends
    included), of which the producer's backend and the monitor's (the report and the samples); the daemon; this
    process (the producer and the reports); and the machine's busy and stolen (by the hypervisor) shares of all
    its CPUs."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster
        self.producer_backend: int | None = None
        self.monitor_backend: int | None = None  # the backend of this bench's report and samples
        self._daemon: tuple[int, float] | None = None  # (pid, CPU seconds at the last take)
        self._last = self._read()

    def _read(self) -> dict[str, float]:
        busy, stolen, every = _machine_s()
        return {"t": time.monotonic(), "busy": busy, "stolen": stolen, "every": every,
                "pg": cluster_cpu_s(self.postmaster), "bench": time.process_time(),
                "producer_pg": (_cpu_s(self.producer_backend) or 0.0) if self.producer_backend else 0.0,
                "monitor_pg": (_cpu_s(self.monitor_backend) or 0.0) if self.monitor_backend else 0.0}

    def take(self, daemon: subprocess.Popen[bytes] | None) -> dict[str, float]:
        now = self._read()
        wall = now["t"] - self._last["t"]
        split = {k: (now[k] - self._last[k]) / wall for k in ("pg", "producer_pg", "monitor_pg", "bench")}
        all_cpus = now["every"] - self._last["every"]
        split["busy"] = (now["busy"] - self._last["busy"]) / all_cpus if all_cpus else 0.0
        split["stolen"] = (now["stolen"] - self._last["stolen"]) / all_cpus if all_cpus else 0.0
        split["daemon"] = 0.0
        if daemon is not None:
            used = _cpu_s(daemon.pid)
            if used is not None:  # a restarted daemon: all it used since it started
                before = self._daemon[1] if self._daemon and self._daemon[0] == daemon.pid else 0.0
                split["daemon"] = (used - before) / wall
                self._daemon = (daemon.pid, used)
        self._last = now
        return split


class Sampler:
    """Sampled every half second: whether a cleanup statement is running (its share of the samples shows the
    duty cycle in place), and the CPU the autovacuum workers used (read from /proc while each is seen, so a
    lower bound)."""

    def __init__(self) -> None:
        self.samples = self.cleaning = 0
        self.vacuum_cpu_s = 0.0
        self._seen: dict[int, float] = {}

    async def sample(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(_SAMPLE)
        self.samples += 1
        self.cleaning += int(row["cleaning"] > 0)
        for pid in row["vacuums"] or []:
            now = _cpu_s(pid)
            if now is None:
                continue
            self.vacuum_cpu_s += now - self._seen.get(pid, 0.0)  # first seen: all it used so far
            self._seen[pid] = now

    def take(self) -> tuple[float, float]:
        """(share of samples with cleanup running, autovacuum CPU seconds) since the last take."""
        share = self.cleaning / self.samples if self.samples else 0.0
        cpu, self.samples, self.cleaning, self.vacuum_cpu_s = self.vacuum_cpu_s, 0, 0, 0.0
        return share, cpu


def cores(cpu: dict[str, float]) -> str:
    """A CpuMeter take as the report's cells: PostgreSQL (producer's, monitor's) | daemon | bench | busy (stolen)."""
    return (f"{cpu['pg']:.2f} ({cpu['producer_pg']:.2f}, {cpu['monitor_pg']:.2f}) | {cpu['daemon']:.2f} "
            f"| {cpu['bench']:.2f} "
            f"| {cpu['busy']:.0%} ({cpu['stolen']:.0%})")
