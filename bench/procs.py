"""One worker process under test: started, measured (CPU, RSS, peak RSS) and stopped by the harness."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError:  # the `bench` extra is not installed: read /proc (Linux) instead
    psutil = None

from bench import latency
from bench.systems import System, adapter

__all__ = ["WorkerProcess", "clean_env", "cluster_cpu_s"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_DROP_PREFIXES = ("WORKER_", "BENCH_", "PGQUEUER_", "PROCRASTINATE_")
_DROP = {"DATABASE_URL", "JOB_QUEUE_RUNNER_SECRET", "SENTRY_DSN", "ADMIN_TOKEN"}


def clean_env() -> dict[str, str]:
    """The parent's environment without anything that would change a system's defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES) and k not in _DROP}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from the 3rd (state) on


def cluster_cpu_s(postmaster: int) -> float:
    """CPU seconds of the postmaster, its live children and its reaped children."""
    f = _stat(postmaster)
    ticks = sum(int(x) for x in f[11:15])  # utime, stime, cutime, cstime
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            c = _stat(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        if int(c[1]) == postmaster:
            ticks += int(c[11]) + int(c[12])
    return ticks / _CLK_TCK


class _ProcStat:
    """The two psutil.Process calls the harness uses, from /proc."""

    _TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_times(self) -> Any:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return _Cpu(int(fields[11]) / self._TICK, int(fields[12]) / self._TICK)

    def memory_info(self) -> Any:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return _Mem(int(line.split()[1]) * 1024)
        return _Mem(0)


class _Cpu:
    def __init__(self, user: float, system: float) -> None:
        self.user, self.system = user, system


class _Mem:
    def __init__(self, rss: int) -> None:
        self.rss = rss


class WorkerProcess:
    def __init__(self, system: System, dsn: str, workdir: Path, *, latency_mode: bool) -> None:
        self.system = system
        self.workdir = workdir
        self.latency_mode = latency_mode
        tag = f"{system.name}-{'latency' if latency_mode else 'drain'}-{time.monotonic_ns()}"
        self.ready_file = workdir / f"{tag}.ready"
        self.latency_file = workdir / f"{tag}.latency"
        self.log_file = workdir / f"{tag}.log"
        env = clean_env()
        env.update(adapter(system.kind).process_env(dsn, system.concurrency, system.batch_size))
        env["BENCH_READY_FILE"] = str(self.ready_file)
        env[latency.ENV] = str(self.latency_file)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: Any = None
        self.peak_sampled = 0

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "bench.launch", self.system.kind, "--concurrency", str(self.system.concurrency)]
        if self.system.batch_size is not None:
            argv += ["--batch-size", str(self.system.batch_size)]
        if self.latency_mode:
            argv.append("--latency")
        return argv

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start the process and wait until it has imported everything (it then waits for `go`)."""
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                cwd=self.workdir,
            )
        self.ps = psutil.Process(self.proc.pid) if psutil is not None else _ProcStat(self.proc.pid)
        deadline = time.monotonic() + timeout_s
        while not self.ready_file.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.system.name}: not ready after {timeout_s:.0f}s\n{self.log_tail()}")
            await asyncio.sleep(0.01)

    def go(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.system.name}: process exited with {self.proc.returncode}\n{self.log_tail()}")

    def cpu_s(self) -> float:
        assert self.ps is not None
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss(self) -> int:
        assert self.ps is not None
        rss = int(self.ps.memory_info().rss)
        self.peak_sampled = max(self.peak_sampled, rss)
        return rss

    def peak_rss(self) -> int:
        """The kernel's high-water mark (VmHWM) where there is one, else the highest sample."""
        assert self.ps is not None
        try:
            for line in Path(f"/proc/{self.ps.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(int(line.split()[1]) * 1024, self.peak_sampled)
        except OSError:
            pass
        return max(self.peak_sampled, self.rss())

    def latencies(self) -> list[float]:
        return latency.read(str(self.latency_file))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (graceful stop), then SIGKILL after `timeout_s`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.returncode
