import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import env_names, load_settings


def test_reads_database_url_and_prefixed_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/app")
    monkeypatch.setenv("WORKER_CONCURRENCY", "7")
    monkeypatch.setenv("WORKER_TASK_TIMEOUTS_S", '{"noop": 3}')
    s = load_settings(_env_file=None)
    assert s.concurrency == 7
    assert s.dsn == "postgresql://u:p@db:5432/app"
    assert s.timeout_for("noop") == 3
    assert s.timeout_for("other") == s.task_timeout_s
    assert "p" in s.secret_values()


def test_missing_database_url_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("WORKER_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert "DATABASE_URL" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKER_CONCURRENCY", "0"),
        ("WORKER_CONCURRENCY", "lots"),
        ("WORKER_POLL_INTERVAL_S", "-1"),
        ("WORKER_LOG_LEVEL", "loud"),
        ("WORKER_TASK_TIMEOUTS_S", "{not json"),
        ("WORKER_BACKOFF_MAX_S", "0.001"),
    ],
)
def test_invalid_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert "\n" not in message
    assert name in message or "WORKER_BACKOFF" in message


def test_non_postgres_url_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://localhost/x")
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings(_env_file=None)


def test_env_names_use_the_seed_names() -> None:
    names = env_names()
    assert names["database_url"] == "DATABASE_URL"
    assert names["runner_secret"] == "JOB_QUEUE_RUNNER_SECRET"
    assert names["concurrency"] == "WORKER_CONCURRENCY"


# A password with / # ? or @ written unencoded ends the URL's authority early: the rest of the password becomes
# the port, the path, the query or the fragment. The fragments below must appear in no message.
BAD_URLS = [
    ("slash", "postgresql://postgres:Pa55/w0rdQZ@127.0.0.1:5432/postgres", ("Pa55", "w0rdQZ")),
    ("hash", "postgresql://postgres:Pa55#w0rdQZ@127.0.0.1:5432/postgres", ("Pa55", "w0rdQZ")),
    ("question", "postgresql://postgres:Pa55?w0rdQZ@127.0.0.1:5432/postgres", ("Pa55", "w0rdQZ")),
    ("at", "postgresql://postgres:Pa55@w0rdQZ@127.0.0.1:5432/postgres", ("Pa55", "w0rdQZ")),
    # the password's start is a valid port: the rest lands in the database name
    ("digits-slash", "postgresql://postgres:5433/w0rdQZ@127.0.0.1:5432/postgres", ("w0rdQZ",)),
    ("bracket", "postgresql://postgres:Pa55[w0rdQZ@127.0.0.1:5432/postgres", ("Pa55", "w0rdQZ")),
    ("port-range", "postgresql://postgres:Pa55w0rdQZ@127.0.0.1:99999/postgres", ("Pa55w0rdQZ",)),
    ("empty-host-in-list", "postgresql://postgres:Pa55w0rdQZ@127.0.0.1:5432,/postgres", ("Pa55w0rdQZ",)),
    ("no-host", "postgresql://postgres:Pa55w0rdQZ@/postgres", ("Pa55w0rdQZ",)),
]


@pytest.mark.parametrize(("name", "url", "fragments"), BAD_URLS, ids=[b[0] for b in BAD_URLS])
@pytest.mark.parametrize("setting", ["DATABASE_URL", "WORKER_LISTEN_DATABASE_URL"])
def test_an_unparseable_database_url_is_one_line_naming_it_without_the_password(
    monkeypatch: pytest.MonkeyPatch, setting: str, name: str, url: str, fragments: tuple[str, ...]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    monkeypatch.setenv(setting, url)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert "\n" not in message and setting in message, message
    assert not [f for f in fragments if f in message], message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "postgres://u:p%2F%23%3F%40ss@db.example.com/app?sslmode=require",
        "postgresql://u@[::1]:5432/app",
        "postgresql://u@h1:5432,h2:5433/app?target_session_attrs=read-write",
        "postgresql://u@/app?host=/var/run/postgresql",
        "postgresql://localhost",
    ],
)
def test_a_well_formed_database_url_is_accepted_as_written(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert load_settings(_env_file=None).dsn == url


@pytest.mark.parametrize(
    ("setting", "command"),
    [
        ("DATABASE_URL", ["run"]),
        ("DATABASE_URL", ["migrate"]),
        ("WORKER_LISTEN_DATABASE_URL", ["run"]),
    ],
)
@pytest.mark.parametrize(("name", "url", "fragments"), BAD_URLS[:4], ids=[b[0] for b in BAD_URLS[:4]])
def test_the_cli_refuses_an_unparseable_database_url_with_one_line_and_exit_2(
    tmp_path: Path, setting: str, command: list[str], name: str, url: str, fragments: tuple[str, ...]
) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WORKER_", "DATABASE_URL", "JOB_QUEUE_", "SENTRY_", "GAME_PLATFORM_"))}
    env.update({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing", "WORKER_HTTP_ENABLED": "false",
                "WORKER_LOG_FORMAT": "json", setting: url})
    proc = subprocess.run([sys.executable, "-m", "worker", *command], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"worker: error: invalid setting: {setting}: "), proc.stderr
    assert not [f for f in fragments if f in proc.stdout + proc.stderr], proc.stderr


@pytest.mark.parametrize("value", ["0", "-10", "100.5", "half", "nan"])
def test_a_cleanup_duty_cycle_outside_0_to_100_percent_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv("WORKER_CLEANUP_DUTY_CYCLE_PERCENT", value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert "\n" not in message and "WORKER_CLEANUP_DUTY_CYCLE_PERCENT" in message, message


def test_the_cleanup_duty_cycle_is_read_in_percent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv("WORKER_CLEANUP_DUTY_CYCLE_PERCENT", "25")
    assert load_settings(_env_file=None).cleanup_duty_cycle_percent == 25.0
    monkeypatch.delenv("WORKER_CLEANUP_DUTY_CYCLE_PERCENT")
    assert 0 < load_settings(_env_file=None).cleanup_duty_cycle_percent <= 100
