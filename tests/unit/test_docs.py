"""The docs say what the code does: the README's settings table is generated from the settings."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_table.py"), "--check"], capture_output=True, cwd=ROOT
    )
    assert proc.returncode == 0, "README.md settings table is stale: run python scripts/settings_table.py"


def test_readme_commands_exist() -> None:
    text = (ROOT / "README.md").read_text()
    for script in ("scripts/demo.sh", "scripts/test.sh", "scripts/run.sh", "scripts/setup.sh"):
        assert script in text
        assert (ROOT / script).is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci
