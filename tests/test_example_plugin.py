"""The example plugin (examples/greetings) installed into a fresh virtual environment next to `worker`, as a team
adopting the daemon would: `worker tasks` lists it with its policy, `worker run` runs its jobs, its schedule
enqueues one job per slot, and uninstalling it leaves its pending jobs visible and untouched.

The virtual environment reuses this interpreter's installed dependencies (a .pth file naming its site-packages,
where `worker` is installed with its entry points); the example's build backend (flit_core) comes from the
machine's package index and the example is installed with pip --no-deps --no-build-isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.daemon import wait_for
from tests.support.procs import worker_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "greetings"
TASK = "greetings.send"

# Run inside the plugin's environment: the scheduler's own tick, at two instants of one `* * * * *` slot and two
# of the next, prints how many jobs each tick enqueued (the first tick registers the schedule).
TICKS = """
import asyncio, json, sys
from datetime import UTC, datetime, timedelta
from worker.discovery import discover
from worker.runtime.scheduler import Scheduler, schedules_of
from worker.service import create_work_pool
from worker.settings import Settings

async def main():
    settings = Settings()
    registry = discover(settings).enabled
    pool = await create_work_pool(settings)
    base = datetime(2030, 1, 1, 12, 0, 5, tzinfo=UTC)
    out = []
    try:
        for at in (base, base + timedelta(seconds=30), base + timedelta(seconds=60), base + timedelta(seconds=90)):
            sched = Scheduler(settings, registry, pool, schedules=[s for s in schedules_of(registry)
                                                                    if s.task_type == sys.argv[1]], now=lambda: at)
            out.append(len(await sched.tick()))
    finally:
        await pool.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def _make_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=60)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, timeout=30).stdout.strip()
    # addsitedir: that site-packages' own .pth files (the editable install of worker) are processed too.
    here = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "_reuse_worker_env.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    return python


def _pip(python: Path, *args: str) -> None:
    # This interpreter's pip, run for the new environment (--python), with no index: nothing is downloaded.
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *args, "--no-input",
                           "--disable-pip-version-check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _worker(python: Path, env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([str(python), "-m", "worker", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=str(EXAMPLE.parent))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


async def _run_until(python: Path, env: dict[str, str], done: Any, timeout_s: float = 30) -> str:
    """`worker run` in the plugin's environment until `done()` holds; returns its output after SIGTERM."""
    proc = subprocess.Popen([str(python), "-m", "worker", "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=str(EXAMPLE.parent))
    try:
        await wait_for(done, timeout_s=timeout_s)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow
async def test_the_example_plugin_installed_next_to_worker_is_listed_run_scheduled_and_removable(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    python = _make_venv(tmp_path / "venv")
    _pip(python, "install", "flit_core>=3.4,<4")
    _pip(python, "install", "--no-deps", "--no-build-isolation", str(EXAMPLE))
    env = worker_env(database_url, GREETINGS_SALUTATION="Howdy")
    env.pop("PYTHONPATH", None)
    env["PYTHONPATH"] = ""

    # worker tasks: listed, from its entry point, with the policy it declares and its schedule.
    listed = {t["name"]: t for t in _worker(python, env, "tasks", "--json")["tasks"]}
    assert {"noop", TASK} <= set(listed)
    task = listed[TASK]
    assert task["source"].startswith("entry point") and "greetings" in task["source"], task["source"]
    policy = task["policy"]
    assert (policy["timeout_s"], policy["max_attempts"], policy["priority"]) == (30, 4, 10)
    assert (policy["backoff_base_s"], policy["backoff_max_s"]) == (5, 60)
    assert [s["cron"] for s in task["schedules"]] == ["0 * * * *"]

    # worker enqueue + worker run: its job runs with its own settings; its priority is the task's.
    job_id = _worker(python, env, "enqueue", TASK, "--payload", '{"name": "Ann"}', "--json")["id"]
    row = await conn.fetchrow("SELECT priority, max_attempts FROM job_queue WHERE id = $1::uuid", job_id)
    assert (row["priority"], row["max_attempts"]) == (10, 4)

    async def succeeded() -> bool:
        return bool(await conn.fetchval("SELECT status FROM job_queue WHERE id = $1::uuid", job_id) == "succeeded")

    await _run_until(python, env, succeeded)
    result = await conn.fetchval("SELECT result FROM job_queue WHERE id = $1::uuid", job_id)
    assert (json.loads(result) if isinstance(result, str) else result) == {"greeting": "Howdy, Ann!"}

    # Its schedule, every minute by override: one job per slot however often the scheduler ticks.
    tick_env = {**env, f"WORKER_TASK_{TASK.upper().replace('.', '_')}__SCHEDULES": "* * * * *"}
    done = subprocess.run([str(python), "-c", TICKS, TASK], env=tick_env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, 0, 1, 0]
    scheduled = await conn.fetch("SELECT id, status, attempts, dedupe_key FROM job_queue "
                                 "WHERE task_type = $1 AND dedupe_key LIKE 'schedule:%'", TASK)
    assert len(scheduled) == 1 and scheduled[0]["status"] == "pending"

    # Uninstalled: no longer a task here, and its pending job is listed and left as it was by a running worker.
    _pip(python, "uninstall", "-y", "greetings-worker")
    assert TASK not in {t["name"] for t in _worker(python, env, "tasks", "--json")["tasks"]}
    before = dict(await conn.fetchrow("SELECT * FROM job_queue WHERE id = $1", scheduled[0]["id"]))
    started = time.monotonic()

    async def a_moment_passed() -> bool:
        return time.monotonic() - started > 2.0

    out = await _run_until(python, env, a_moment_passed)
    assert "daemon.started" in out or "daemon.starting" in out
    after = dict(await conn.fetchrow("SELECT * FROM job_queue WHERE id = $1", scheduled[0]["id"]))
    assert after == before
    jobs = _worker(python, env, "jobs", "list", "--task-type", TASK, "--status", "pending", "--json")["jobs"]
    assert [j["id"] for j in jobs] == [str(scheduled[0]["id"])]
    assert os.path.exists(tmp_path / "venv")
