"""Tasks are found through the `worker.tasks` entry points (the built-ins too), WORKER_TASK_MODULES and
`worker run --tasks`; a culprit (import error, not a task, a name declared twice) is one line, exit 2, and nothing
connects; WORKER_TASKS_ENABLED picks what a replica runs."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from tests.support.daemon import make_settings, wait_for
from tests.support.procs import WorkerProcess, worker_env
from worker import queue
from worker.discovery import discover
from worker.errors import ConfigError
from worker.service import discover_tasks

NOWHERE = "postgresql://postgres@127.0.0.1:9/nowhere"
MODULE = '''
from pydantic import BaseModel, ConfigDict
from worker.tasks import Task

class Greet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    who: str = "world"

async def greet(payload, ctx):
    return {"greeted": payload.who, "by": ctx.worker_id}

def tasks():
    return [Task("team.greet", greet, Greet, description="Greets.", max_attempts=2, schedules=("*/5 * * * *",))]

duplicate = Task("noop", greet, Greet)
not_a_task = 42
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    (tmp_path / "team_tasks.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "broken_tasks.py").write_text("import no_such_module_anywhere\n")
    return tmp_path


def _worker(args: list[str], url: str, path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker", *args], env=worker_env(url, PYTHONPATH=str(path), **env),
                          capture_output=True, text=True, timeout=30)


def test_the_builtin_tasks_come_through_the_entry_points(database_url: str) -> None:
    found = discover(make_settings(database_url))
    assert found.every.names() == ["cleanup", "game_platform_sync", "noop"]
    assert found.sources["noop"] == "entry point noop (worker)"


def test_without_its_own_entry_points_the_builtins_come_from_the_composition_root(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_kw: [])
    assert discover(make_settings(database_url)).every.names() == []  # the core names no built-in task
    found = discover_tasks(make_settings(database_url))
    assert found.every.names() == ["cleanup", "game_platform_sync", "noop"]
    assert found.sources["noop"] == "built-in (worker)"


def test_a_module_task_is_listed_with_its_source(database_url: str, plugin_path: Path) -> None:
    proc = _worker(["tasks", "--json"], database_url, plugin_path, WORKER_TASK_MODULES="team_tasks:tasks")
    assert proc.returncode == 0, proc.stderr
    tasks = {t["name"]: t for t in json.loads(proc.stdout)["tasks"]}
    assert tasks["team.greet"]["source"] == "module team_tasks:tasks"
    assert tasks["team.greet"]["policy"]["max_attempts"] == 2
    assert tasks["team.greet"]["schedules"][0]["name"] == "team_greet"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--tasks", "broken_tasks:x"], {}, "cannot import 'broken_tasks' (broken_tasks:x): ModuleNotFoundError"),
        (["--tasks", "team_tasks:not_a_task"], {}, "module team_tasks:not_a_task is not a task (a int)"),
        (["--tasks", "team_tasks:nothing"], {}, "module 'team_tasks' has no attribute 'nothing'"),
        (["--tasks", "team_tasks:duplicate"], {},
         "task type 'noop' is declared twice: by entry point noop (worker) and by module team_tasks:duplicate"),
        ([], {"WORKER_TASK_MODULES": "team_tasks:tasks,team_tasks:tasks"}, "'team.greet' is declared twice"),
        ([], {"WORKER_TASKS_ENABLED": "noop,nope"}, "WORKER_TASKS_ENABLED: no discovered task is named 'nope'"),
        (["--tasks", "team_tasks"], {}, "'team_tasks' is not module:attribute"),
    ],
)
def test_a_culprit_is_named_in_one_line_with_exit_2_and_nothing_connects(
    plugin_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    proc = _worker(["run", *args], NOWHERE, plugin_path, **env)  # a closed port: connecting would be exit 1
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


async def test_worker_run_runs_a_module_task_and_only_the_enabled_ones(
    database_url: str, conn: asyncpg.Connection, plugin_path: Path
) -> None:
    greet = await queue.enqueue(conn, queue.NewJob("team.greet", {"who": "team"}))
    noop = await queue.enqueue(conn, queue.NewJob("noop"))
    env = worker_env(database_url, PYTHONPATH=str(plugin_path), WORKER_TASKS_ENABLED="team.greet")
    proc = WorkerProcess(env, name="greeter", args=("--tasks", "team_tasks:tasks"))
    try:

        async def done() -> bool:
            return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", greet.id) == "succeeded"

        await wait_for(done, timeout_s=20)
        [started] = proc.named("daemon.starting")
    finally:
        proc.cleanup()
    assert started["task_types"] == ["team.greet"]
    assert await conn.fetchval("SELECT result FROM job_queue WHERE id = $1", greet.id) == {
        "greeted": "team", "by": "greeter"}
    assert await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", noop.id) == "pending"


def test_discover_raises_config_error_for_an_unknown_allow_list_entry(database_url: str) -> None:
    with pytest.raises(ConfigError, match="WORKER_TASKS_ENABLED"):
        discover(make_settings(database_url, tasks_enabled="ghost"))
