"""`worker demo` end to end, as a newcomer runs it: a real process, a real database, the simulator, one sync."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent


def _env(database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("WORKER_")}
    env["PYTHONPATH"] = str(ROOT)
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def _demo(*args: str, database_url: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "demo", *args], cwd=cwd, env=_env(database_url),
        capture_output=True, text=True, timeout=150, check=False,
    )


def _summary(out: str) -> dict[str, object]:
    match = re.search(r"^summary: (\{.*\})$", out, re.MULTILINE)
    assert match, out
    summary: dict[str, object] = json.loads(match.group(1))
    return summary


def _port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


def test_demo_on_a_private_postgres_syncs_and_leaves_nothing_running(tmp_path: Path) -> None:
    proc = _demo(database_url=None, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    summary = _summary(out)
    assert summary["competitors"] == 12 and summary["updated"] == 12 and summary["failed"] == 0
    assert re.search(r"^  succeeded attempt 1 +competitors with stats: 12$", out, re.MULTILINE), out
    assert re.search(r'worker_jobs_succeeded_total\{task_type="game_platform_sync"\} 1\.0', out)
    assert "readiness: GET /readyz -> 200" in out
    db = re.search(r"^database: postgresql://postgres@127\.0\.0\.1:(\d+)/postgres \(data in (\S+);", out, re.M)
    http = re.search(r"^daemon: running, HTTP on http://127\.0\.0\.1:(\d+)$", out, re.MULTILINE)
    sim = re.search(r"^game platform simulator: http://127\.0\.0\.1:(\d+)$", out, re.MULTILINE)
    assert db and http and sim, out
    assert not Path(db.group(2)).exists(), "the private database's files were left behind"
    assert _processes_mentioning(db.group(2)) == [], "a server of the private database still runs"
    for port in (int(db.group(1)), int(http.group(1)), int(sim.group(1))):
        assert _port_closed(port), f"port {port} still open"


async def _stats_and_jobs(url: str) -> tuple[int, list[str]]:
    conn = await asyncpg.connect(url)
    try:
        stats = await conn.fetchval("SELECT count(*) FROM competitor_game_stats")
        statuses = [r["status"] for r in await conn.fetch("SELECT status FROM job_queue")]
        return int(stats), statuses
    finally:
        await conn.close()


def test_demo_uses_database_url_when_set_and_a_rerun_finds_nothing_to_update(
    tmp_path: Path, empty_database_url: str
) -> None:
    first = _demo(database_url=empty_database_url, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "private PostgreSQL" not in first.stdout
    assert asyncio.run(_stats_and_jobs(empty_database_url)) == (12, ["succeeded"])
    second = _demo(database_url=empty_database_url, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "seeded: 3 coaches x 4 competitors (0 new)" in second.stdout
    assert _summary(second.stdout)["unchanged"] == 12
    assert asyncio.run(_stats_and_jobs(empty_database_url)) == (12, ["succeeded", "succeeded"])


def test_demo_keep_running_serves_until_sigterm_then_stops_everything(
    tmp_path: Path, empty_database_url: str
) -> None:
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "demo", "--keep-running"], cwd=tmp_path,
            env=_env(empty_database_url), stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "press Ctrl-C" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        http = re.search(r"HTTP on (http://127\.0\.0\.1:(\d+))", log.read_text())
        assert http
        assert httpx.get(f"{http.group(1)}/healthz", timeout=5).status_code == 200
        time.sleep(0.5)
        assert proc.poll() is None, "--keep-running exited on its own"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _port_closed(int(http.group(2)))
    assert "stopped: daemon and simulator" in log.read_text()


def test_demo_rejects_bad_arguments_and_touches_nothing(tmp_path: Path, empty_database_url: str) -> None:
    proc = _demo("--coaches", "0", database_url=empty_database_url, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("worker: error: --coaches") and proc.stderr.count("\n") == 1

    async def tables() -> int:
        conn = await asyncpg.connect(empty_database_url)
        try:
            n: int = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            return n
        finally:
            await conn.close()

    assert asyncio.run(tables()) == 0
