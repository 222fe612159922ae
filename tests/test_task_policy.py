"""A task declares its own policy; operators override any field per task as WORKER_TASK_<NAME>__<FIELD>; the older
WORKER_TASK_TIMEOUTS_S and WORKER_SCHEDULE_<NAME> still apply; a bad value is one line and exit 2."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel

from tests.support.daemon import make_settings
from tests.support.procs import worker_env
from worker.builtin import default_registry
from worker.errors import ConfigError
from worker.schedules import schedules_of
from worker.task_policy import apply_overrides, effective_policy, override_fields
from worker.tasks import MAINTENANCE_PRIORITY, Registry, Task, TaskContext


class Empty(BaseModel):
    pass


async def _handler(payload: Empty, ctx: TaskContext) -> None:
    return None


def _worker(args: list[str], database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker", *args], env=worker_env(database_url, **env),
                          capture_output=True, text=True, timeout=30)


def test_the_builtin_tasks_declare_the_policy_the_core_used_to_hold() -> None:
    tasks = {t.name: t for t in default_registry()}
    assert tasks["cleanup"].schedules == ("15 3 * * *",) and tasks["cleanup"].priority == MAINTENANCE_PRIORITY
    assert tasks["cleanup"].max_attempts == 3
    assert tasks["game_platform_sync"].schedules == ("0 * * * *",)
    assert tasks["noop"].schedules == ()


def test_every_policy_field_is_overridable_by_the_one_form(database_url: str) -> None:
    # The overridable fields come from the Task dataclass: a field added to it (issue 20's concurrency_limit) gets
    # its WORKER_TASK_<NAME>__<FIELD> with no change to the override code.
    fields = override_fields()
    assert {"timeout_s", "max_attempts", "priority", "backoff_base_s", "backoff_max_s", "backoff_jitter",
            "schedules"} <= set(fields)
    values = {"timeout_s": "900", "max_attempts": "7", "priority": "-5", "backoff_base_s": "2",
              "backoff_max_s": "60", "backoff_jitter": "0", "schedules": '["*/5 * * * *", "0 1 * * *"]'}
    settings = make_settings(database_url, task_overrides={"game_platform_sync": values})
    task = apply_overrides(default_registry(), settings).get("game_platform_sync")
    assert (task.timeout_s, task.max_attempts, task.priority) == (900.0, 7, -5)
    assert (task.backoff_base_s, task.backoff_max_s, task.backoff_jitter) == (2.0, 60.0, 0.0)
    assert task.schedules == ("*/5 * * * *", "0 1 * * *")
    assert [s.name for s in schedules_of(Registry.of([task]))] == ["game_platform_sync", "game_platform_sync_2"]
    assert [s.priority for s in schedules_of(Registry.of([task]))] == [-5, -5]


def test_an_override_reaches_a_field_the_task_dataclass_gains_later(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Grown(Task[Any]):
        concurrency_limit: int | None = None

    monkeypatch.setattr("worker.task_policy.Task", Grown)
    settings = make_settings(database_url, task_overrides={"grown": {"concurrency_limit": "3"}})
    registry = Registry.of([Grown("grown", _handler, Empty)])
    assert apply_overrides(registry, settings).get("grown").concurrency_limit == 3  # type: ignore[attr-defined]


def test_the_environment_form_and_the_older_settings_apply_and_the_new_form_wins(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_TASK_GAME_PLATFORM_SYNC__TIMEOUT_S", "900")
    monkeypatch.setenv("WORKER_SCHEDULE_GAME_PLATFORM_SYNC", "")
    monkeypatch.setenv("WORKER_TASK_TIMEOUTS_S", json.dumps({"game_platform_sync": 60, "cleanup": 120}))
    from worker.settings import Settings

    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    registry = apply_overrides(default_registry(), settings)
    assert registry.get("game_platform_sync").timeout_s == 900.0
    assert registry.get("game_platform_sync").schedules == ()
    assert registry.get("cleanup").timeout_s == 120.0
    assert effective_policy(registry.get("noop"), settings)["timeout_s"] == settings.task_timeout_s


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORKER_TASK_GAME_PLATFORM_SYNC__TIMEOUT_S": "-1"}, "WORKER_TASK_GAME_PLATFORM_SYNC__TIMEOUT_S: timeout_s"),
        ({"WORKER_TASK_NOOP__MAX_ATTEMPTS": "many"}, "WORKER_TASK_NOOP__MAX_ATTEMPTS: "),
        ({"WORKER_TASK_NOOP__TIMEOUTS": "1"}, "WORKER_TASK_NOOP__TIMEOUTS: noop has no policy field 'timeouts'"),
        ({"WORKER_TASK_NOPE__TIMEOUT_S": "1"}, "WORKER_TASK_NOPE__TIMEOUT_S: no discovered task is named 'nope'"),
        ({"WORKER_SCHEDULE_CLEANUP": "every day"}, "WORKER_TASK_CLEANUP__SCHEDULES: schedules: not a cron"),
        ({"WORKER_TASK_CLEANUP__PRIORITY": "5000"}, "WORKER_TASK_CLEANUP__PRIORITY: priority must be"),
        ({"GAME_PLATFORM_BASE_URL": "ftp://x"}, "GAME_PLATFORM_BASE_URL: must be an http"),
    ],
)
def test_a_bad_task_setting_is_one_line_and_exit_2_before_anything_connects(env: dict[str, str], message: str) -> None:
    # A closed port: had anything tried to connect, the error would be a database error and exit 1.
    proc = _worker(["run"], "postgresql://postgres@127.0.0.1:9/nowhere", **env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_worker_tasks_lists_the_effective_policy_and_schedules(database_url: str) -> None:
    proc = _worker(["tasks", "--json"], database_url, WORKER_TASK_NOOP__TIMEOUT_S="12",
                   WORKER_TASK_NOOP__SCHEDULES="*/10 * * * *", WORKER_SCHEDULES_ENABLED="true")
    assert proc.returncode == 0, proc.stderr
    tasks = {t["name"]: t for t in json.loads(proc.stdout)["tasks"]}
    assert set(tasks) >= {"noop", "cleanup", "game_platform_sync"}
    assert tasks["noop"]["policy"]["timeout_s"] == 12.0 and tasks["noop"]["policy"]["max_attempts"] == 5
    assert [s["cron"] for s in tasks["noop"]["schedules"]] == ["*/10 * * * *"]
    assert tasks["cleanup"]["schedules"][0]["priority"] == MAINTENANCE_PRIORITY
    assert tasks["cleanup"]["source"].startswith(("entry point cleanup", "built-in"))
    table = _worker(["tasks"], database_url)
    assert table.returncode == 0 and "game_platform_sync" in table.stdout and "15 3 * * *" in table.stdout


def test_a_task_that_breaks_its_own_policy_is_refused_where_it_is_declared() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        Task("t", _handler, Empty, max_attempts=0)
    with pytest.raises(ValueError, match="not a cron"):
        Task("t", _handler, Empty, schedules=("whenever",))
    with pytest.raises(ConfigError, match="WORKER_TASK_T__BACKOFF_MAX_S"):
        apply_overrides(Registry.of([Task("t", _handler, Empty, backoff_base_s=10)]),
                        make_settings("postgresql://x@127.0.0.1/x", task_overrides={"t": {"backoff_max_s": "1"}}))
