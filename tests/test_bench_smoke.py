"""The benchmark harness runs end to end on tiny sizes, so that it cannot rot. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SERVER_URL

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_compare_runs_worker_and_ceiling_and_prints_one_table(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_") and k != "DATABASE_URL"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench.compare", "--jobs", "200", "--runs", "2", "--latency-jobs", "10",
            "--idle-s", "1", "--systems", "worker,ceiling", "--server-url", SERVER_URL,
            "--results-dir", str(tmp_path), "--enqueue-jobs", "300",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    systems_part, enqueue_part = proc.stdout.split("batch enqueue, 300 jobs")
    table = [line for line in systems_part.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table] == ["system", "worker", "ceiling"]
    assert "error" not in "\n".join(table)
    enqueuers = [line.split("|")[1].strip() for line in enqueue_part.splitlines() if line.startswith("| ")]
    assert {"enqueuer", "enqueue_many", "plain_insert", "ceiling_insert"} <= set(enqueuers)

    [result_file] = tmp_path.glob("*.json")
    result = json.loads(result_file.read_text())
    by_system = {s["system"]: s for s in result["summaries"]}
    assert set(by_system) == {"worker", "ceiling"}
    for summary in by_system.values():
        assert summary["succeeded_ok"] is True
        assert summary["drain_median"] > 0
        assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}
        assert summary["rss_peak_mib"] > 0
    assert [len(result["enqueue"][name]) for name in ("enqueue_many", "plain_insert")] == [2, 2]
    for raw in result["raw"]:
        assert [run["succeeded"] for run in raw["drain"]] == [200, 200]  # two drain rounds
        assert len(raw["idle"]["latencies_s"]) == 10  # 5 + 5 over the two latency rounds
        assert raw["idle"]["idle_tx_per_s"] >= 0


def test_bench_compare_rejects_an_unknown_system_with_exit_code_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--systems", "worker,nosuch", "--results-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown system(s) nosuch" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_bench_soak_runs_a_short_soak_and_a_small_burst_and_prints_their_tables(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_") and k != "DATABASE_URL"}
    soak = subprocess.run(
        [sys.executable, "-m", "bench.bench_soak", "--minutes", "0.1", "--interval", "2", "--shares", "0.5",
         "--drain-jobs", "500", "--drain-runs", "2", "--workdir", str(tmp_path / "soak"), "--statements"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert soak.returncode == 0, soak.stdout[-3000:] + soak.stderr[-3000:]
    assert "with stock settings and pg_stat_statements preloaded" in soak.stdout
    assert "drain rate before (500 jobs, empty table)" in soak.stdout and "the median of" in soak.stdout
    assert "drain rate after (500 jobs, empty table)" in soak.stdout and "% of the drain after" in soak.stdout
    assert soak.stdout.count("during the drain, cores: PostgreSQL") == 4  # two drains before the soak, two after
    report, statements = soak.stdout.split("statements of this soak (pg_stat_statements):")
    targets = report.split("\ntargets:\n")[1].splitlines()[:5]  # bench/soak_verdict.py, one line per target
    assert [t.split(":")[0] for t in targets] == [
        "- throughput after the first minute", "- oldest due job", "- job_queue + job_runs",
        "- daemon restarts 0, job.lease_lost 0", "- cleanup"]
    rows = [line for line in report.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows and all(len(r.split("|")) == 25 for r in rows)  # the 23 columns bench/README.md lists
    top = [line.split("|") for line in statements.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert top and all(len(r) == 8 for r in top)
    assert any("task types this worker handles" in r[6] for r in top)  # the claim (queue.sql's comment)
    burst = subprocess.run(
        [sys.executable, "-m", "bench.bench_soak", "--burst", "--burst-jobs", "300", "--burst-finished", "2000",
         "--burst-runs", "2", "--workdir", str(tmp_path / "burst")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert burst.returncode == 0, burst.stdout[-3000:] + burst.stderr[-3000:]
    assert "| 2,000 finished jobs, statistics taken before the burst (jobs/s) |" in burst.stdout
    pairs = [line.split("|") for line in burst.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [p[1].strip() for p in pairs] == ["1", "2"] and all(p[4].strip().endswith("x") for p in pairs)
    assert "median ratio: " in burst.stdout


def test_bench_soak_rejects_a_bad_share_with_exit_code_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.bench_soak", "--shares", "half"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--shares" in proc.stderr


@pytest.mark.parametrize(("option", "value"), [
    ("--cleanup-spread-s", "-1"), ("--cleanup-spread-s", "86401"),
    ("--cleanup-duty-cycle-percent", "0"), ("--cleanup-duty-cycle-percent", "101"),
])
def test_bench_soak_rejects_a_cleanup_setting_the_daemon_would_refuse_with_exit_code_2(option: str, value: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.bench_soak", option, value], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"{option} must be in" in proc.stderr


def test_bench_soak_rejects_zero_burst_runs_with_exit_code_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.bench_soak", "--burst", "--burst-runs", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--burst-runs must be at least 1" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_password_server_admits_its_role_only_with_the_password() -> None:
    import asyncio
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    from bench.measure import password_server

    async def check(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT current_user") == "bench"
        finally:
            await conn.close()
        parts = urlsplit(url)
        without = urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(without, password="wrong")

    with password_server() as url:
        assert urlsplit(url).password
        asyncio.run(check(url))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_claim_walk_prints_a_line_per_way_and_round() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_") and k != "DATABASE_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.claim_walk", "--pending", "3000", "--claimed", "1000", "--batch", "50",
         "--claims", "5", "--rounds", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("round ")]
    assert [line.split(":")[0] for line in lines] == ["round 1, from the head", "round 1, from the key"]
    bad = subprocess.run([sys.executable, "-m", "bench.claim_walk", "--pending", "10", "--claimed", "100"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--pending must cover" in bad.stderr
