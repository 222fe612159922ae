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
