"""The alert rules shipped in deploy/prometheus/: `promtool check rules` is clean and `promtool test rules` passes
its cases (sync failing N times in a row, sync not succeeded for 2 hours, due queue too old, no live worker for a
task type, listener down). Skipped where promtool is not installed (CI installs Debian's prometheus package)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from worker.metrics import Metrics

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=RULES, capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_promtool_check_rules_finds_the_alert_rules_clean() -> None:
    out = _promtool("check", "rules", "worker-alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"SUCCESS: \d+ rules found", out.stdout)


@needs_promtool
def test_promtool_test_rules_passes_every_alert_case() -> None:
    out = _promtool("test", "rules", "worker-alerts.test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_metric_the_rules_use_is_one_the_worker_exports() -> None:
    text = (RULES / "worker-alerts.yml").read_text()
    used = set(re.findall(r"\b(worker_[a-z_]+)\b", text))
    metrics = Metrics(["noop"])
    metrics.listener_up = lambda: True
    exported = set(re.findall(r"^# TYPE (worker_[a-z_]+) ", metrics.render().decode(), re.M))
    assert used and used <= exported, sorted(used - exported)
