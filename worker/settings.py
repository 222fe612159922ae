"""One typed, validated settings object, read from the environment and an optional `.env` file.

Every field's environment name is `WORKER_<FIELD>` unless it carries an explicit alias (the seed's names:
`DATABASE_URL`, `JOB_QUEUE_RUNNER_SECRET`, `SENTRY_DSN`, ...). Units are in the names.
"""

from __future__ import annotations

import os
import re
import socket
from functools import cached_property
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from worker.errors import ConfigError

__all__ = ["Settings", "env_names", "load_settings", "parse_override_name"]


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WORKER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # --- database -------------------------------------------------------------------------------
    database_url: SecretStr = Field(
        validation_alias=AliasChoices("DATABASE_URL", "WORKER_DATABASE_URL"),
        description="PostgreSQL URL for work (may be a transaction-mode pooler).",
    )
    listen_database_url: SecretStr | None = Field(
        default=None,
        description="Direct (non-pooled) URL used only for LISTEN; defaults to DATABASE_URL.",
    )
    listen_enabled: bool = Field(
        default=True, description="False = poll-only mode (no direct connection available for LISTEN)."
    )
    statement_cache: bool = Field(
        default=True, description="asyncpg prepared-statement cache; turn off behind a transaction-mode pool."
    )
    db_pool_size: int = Field(default=10, ge=1, le=200, description="Maximum connections in the work pool.")
    db_connect_timeout_s: float = Field(default=5.0, gt=0, le=120, description="Connect timeout.")
    db_statement_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="Timeout of the daemon's own queries (not of handlers' work)."
    )
    db_call_timeout_s: float = Field(
        default=10.0, gt=0, le=3600,
        description=(
            "Client-side deadline of each of the daemon's own database calls (claim, finish, heartbeat, "
            "schedules); a connection that misses it is discarded."
        ),
    )

    # --- the daemon -----------------------------------------------------------------------------
    worker_id: str = Field(
        default_factory=_default_worker_id, min_length=1, max_length=200, description="Names this process."
    )
    concurrency: int = Field(default=10, ge=1, le=1000, description="Jobs run at once by this process.")
    poll_interval_s: float = Field(default=10.0, gt=0, le=3600, description="Fallback poll (jittered).")
    lease_s: float = Field(default=30.0, ge=1, le=86400, description="How long a claim holds without heartbeat.")
    recovery_interval_s: float = Field(
        default=10.0, gt=0, le=3600, description="How often expired leases are swept (within the poll's query)."
    )
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=3600, description="Time running jobs get on stop.")
    listen_probe_interval_s: float = Field(default=10.0, gt=0, le=3600, description="NOTIFY round-trip probe.")
    listen_probe_timeout_s: float = Field(default=5.0, gt=0, le=600, description="A probe slower than this fails.")
    claim_ahead_below_ms: float = Field(
        default=50.0, ge=0, le=60000,
        description=(
            "While jobs take less than this on average, claim ahead of the free slots: one batch, more for "
            "shorter jobs (about 5 ms of work per slot, at most 1,000 jobs ahead) (0 = never)."
        ),
    )
    completion_flush_ms: float = Field(
        default=2.0, ge=0, le=1000, description="How long finished jobs are buffered before one batch write."
    )
    task_timeout_s: float = Field(default=3600.0, gt=0, le=7 * 86400, description="Default per-job timeout.")
    task_timeouts_s: dict[str, float] = Field(
        default_factory=dict,
        description='Per task type timeouts, JSON: {"my_task": 900} (older form of WORKER_TASK_<NAME>__TIMEOUT_S).',
    )
    default_max_attempts: int = Field(default=5, ge=1, le=1000, description="max_attempts of new jobs.")
    backoff_base_s: float = Field(default=5.0, gt=0, le=86400, description="Delay after the first failure.")
    backoff_max_s: float = Field(default=3600.0, gt=0, le=7 * 86400, description="Cap on any retry delay.")
    backoff_jitter: float = Field(default=0.2, ge=0, le=1, description="Fraction of a delay randomised (+/-).")

    # --- HTTP port ------------------------------------------------------------------------------
    http_enabled: bool = Field(default=True, description="Serve the HTTP port (health, trigger, metrics, admin).")
    http_host: str = Field(default="0.0.0.0", min_length=1, description="Bind address of the HTTP port.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0 = any free port).")
    runner_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("JOB_QUEUE_RUNNER_SECRET", "WORKER_RUNNER_SECRET"),
        description="Bearer secret of /trigger and /api/jobs/run (unset: they answer 503).",
    )
    runner_secret_previous: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("JOB_QUEUE_RUNNER_SECRET_PREVIOUS", "WORKER_RUNNER_SECRET_PREVIOUS"),
        description="The previous runner secret, still accepted while a rotation rolls out.",
    )
    run_limit_max: int = Field(default=100, ge=1, le=10000, description="Cap on /api/jobs/run's limit.")
    run_budget_s: float = Field(default=25.0, gt=0, le=3600, description="Time budget of /api/jobs/run.")
    admin_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("WORKER_ADMIN_TOKEN", "ADMIN_TOKEN"),
        description="Token of the admin page and API (unset: /admin is off).",
    )
    readyz_probe_max_age_s: float = Field(
        default=30.0, gt=0, le=3600, description="Last NOTIFY round trip must be younger than this."
    )

    # --- observability --------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto = console on a TTY, JSON lines otherwise."
    )
    sentry_dsn: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SENTRY_DSN", "WORKER_SENTRY_DSN"),
        description="Sentry DSN (unset: nothing is sent).",
    )
    sentry_environment: str | None = Field(default=None, description="Sentry environment tag.")
    sentry_consecutive_failures: int = Field(
        default=3, ge=1, le=1000, description="Alert when a task type fails this many times in a row."
    )

    # --- schedules and retention ----------------------------------------------------------------
    schedules_enabled: bool = Field(default=True, description="Run the schedules the tasks declare.")
    retention_succeeded_days: float = Field(
        default=14.0, gt=0, le=36500, description="cleanup deletes succeeded jobs older than this."
    )
    retention_failed_days: float = Field(
        default=60.0, gt=0, le=36500, description="cleanup deletes failed/cancelled jobs older than this."
    )
    cleanup_batch_size: int = Field(default=1000, ge=1, le=100000, description="Rows deleted per statement.")
    cleanup_duty_cycle_percent: float = Field(
        default=50.0, gt=0, le=100,
        description="Share of the time cleanup's batches may run: after a batch of t s it pauses t x (100 - p) / p "
        "(100 = no pause).",
    )
    cleanup_yield_after_s: float = Field(
        default=1.0, ge=0, le=3600,
        description="Cleanup pauses by its duty cycle only while the oldest due job has waited longer than this; "
        "while the queue keeps up its next piece runs at once (0 = pause whenever a job is due).",
    )
    cleanup_spread_s: float = Field(
        default=600.0, ge=0, le=86400,
        description="A scheduled run paces its pieces to spread its deletes over this long, or over 80 % of the "
        "time to its schedule's next slot if that is shorter (0 = no pacing: each piece follows at once).",
    )

    # --- tasks ----------------------------------------------------------------------------------
    task_modules: str = Field(
        default="",
        description="More tasks, comma-separated `module:attribute` (a task, or a callable returning tasks).",
    )
    tasks_enabled: str = Field(
        default="", description="Comma-separated task types this replica runs (empty = every discovered task)."
    )
    task_overrides: dict[str, dict[str, str]] = Field(
        default_factory=dict, exclude=True,
        description="Read from WORKER_TASK_<NAME>__<FIELD> variables (docs/tasks.md), not set directly.",
    )

    @field_validator("database_url", "listen_database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        _check_postgres_url(value.get_secret_value())
        return value

    @model_validator(mode="before")
    @classmethod
    def _task_overrides(cls, data: Any) -> Any:
        """Gather `WORKER_TASK_<NAME>__<FIELD>` (and the older `WORKER_SCHEDULE_<NAME>`, and a `schedule_<name>`
        keyword) into `task_overrides`: {NAME: {FIELD: text}}, checked against the discovered tasks at start-up
        (worker/task_policy.py; tests/test_task_policy.py)."""
        if not isinstance(data, dict):
            return data
        found: dict[str, dict[str, str]] = {}
        for key, value in os.environ.items():
            parsed = parse_override_name(key)
            if parsed is not None:
                found.setdefault(parsed[0], {})[parsed[1]] = value
        for key in [k for k in data if isinstance(k, str) and k.startswith("schedule_")]:
            found.setdefault(key.removeprefix("schedule_").upper(), {})["SCHEDULES"] = str(data.pop(key))
        for name, fields in (data.get("task_overrides") or {}).items():
            found.setdefault(str(name).upper(), {}).update({str(f).upper(): str(v) for f, v in fields.items()})
        data["task_overrides"] = found
        return data

    @field_validator("task_timeouts_s")
    @classmethod
    def _positive_timeouts(cls, value: dict[str, float]) -> dict[str, float]:
        for name, seconds in value.items():
            if seconds <= 0:
                raise ValueError(f"timeout for {name!r} must be > 0")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("WORKER_BACKOFF_MAX_S must be >= WORKER_BACKOFF_BASE_S")
        if self.listen_probe_timeout_s >= self.readyz_probe_max_age_s:
            raise ValueError("WORKER_LISTEN_PROBE_TIMEOUT_S must be < WORKER_READYZ_PROBE_MAX_AGE_S")
        return self

    # --- derived --------------------------------------------------------------------------------
    @cached_property
    def heartbeat_interval_s(self) -> float:
        return self.lease_s / 3

    @property
    def dsn(self) -> str:
        return self.database_url.get_secret_value()

    @property
    def listen_dsn(self) -> str:
        url = self.listen_database_url or self.database_url
        return url.get_secret_value()

    def runner_secrets(self) -> list[bytes]:
        return [
            s.get_secret_value().encode()
            for s in (self.runner_secret, self.runner_secret_previous)
            if s is not None and s.get_secret_value()
        ]

    def timeout_for(self, task_type: str, default: float | None = None) -> float:
        if task_type in self.task_timeouts_s:
            return self.task_timeouts_s[task_type]
        return default if default is not None else self.task_timeout_s

    def secret_values(self) -> list[str]:
        """Every secret this process knows, for log redaction."""
        values: list[str] = []
        for secret in (
            self.runner_secret,
            self.runner_secret_previous,
            self.admin_token,
            self.sentry_dsn,
        ):
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        for url in (self.database_url, self.listen_database_url):
            if url is not None:
                password = _url_password(url.get_secret_value())
                if password:
                    values.append(password)
        dsn = self.sentry_dsn.get_secret_value() if self.sentry_dsn else ""
        key = _url_user(dsn)
        if key:
            values.append(key)
        return values


_ENCODE_HINT = "a password holding / # ? @ [ ] must be percent-encoded"
_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_SESSION_ATTRS = frozenset({"any", "primary", "standby", "prefer-standby", "read-write", "read-only"})
_IPV6_HOST = re.compile(r"\[[^\]]+\](?::(.*))?")


def _check_postgres_url(url: str) -> None:
    """Refuse, before anything connects, what asyncpg's DSN parser would choke on or misread (a password's
    tail taken for the port, the database, the query or another host). The messages quote no part of the URL:
    any part may be a fragment of the password. Guarded by tests/unit/test_settings.py and test_hostile_cli.py,
    which also check that asyncpg parses every URL accepted here as written."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"not a valid URL ({_ENCODE_HINT})") from None
    if parts.scheme not in ("postgresql", "postgres") or not url.startswith(f"{parts.scheme}://"):
        raise ValueError("must be a postgresql:// URL")
    if "#" in url or "@" in parts.path or "@" in parts.query or parts.netloc.count("@") > 1:
        raise ValueError(f"the URL does not end its user part where it should ({_ENCODE_HINT})")
    hostspec = parts.netloc.rpartition("@")[2]
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True) if parts.query else {}
    except ValueError:
        raise ValueError(f"the query string is malformed ({_ENCODE_HINT})") from None
    hosts = hostspec.split(",") if hostspec else query.get("host", [""])[-1].split(",")
    for host in hosts:
        port = _host_port(host)
        port = unquote(port) if hostspec else port  # asyncpg unquotes the URL's own host list, not ?host=
        if port and not _is_port(port):
            raise ValueError(f"the port must be a number from 1 to 65535 ({_ENCODE_HINT})")
    if "port" in query and not all(_is_port(p) for p in query["port"][-1].split(",")):
        raise ValueError("the port parameter must be numbers from 1 to 65535")
    if "/" in parts.path[1:]:
        raise ValueError(f"the database name holds a '/' ({_ENCODE_HINT})")
    if query.get("sslmode", ["prefer"])[-1] not in _SSLMODES:
        raise ValueError(f"sslmode must be one of {', '.join(sorted(_SSLMODES))}")
    if query.get("target_session_attrs", ["any"])[-1] not in _SESSION_ATTRS:
        raise ValueError(f"target_session_attrs must be one of {', '.join(sorted(_SESSION_ATTRS))}")


def _host_port(host: str) -> str:
    """The port of one host entry ('' when none); ValueError when the entry names no host."""
    if host.startswith("/"):  # a Unix socket directory
        return ""
    if host.startswith("["):
        match = _IPV6_HOST.fullmatch(host)
        if match is None:
            raise ValueError(f"an IPv6 host is malformed ({_ENCODE_HINT})")
        return match.group(1) or ""
    name, _, port = host.partition(":")
    if not name:
        raise ValueError("names no host (or an empty one in a list)")
    return port


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _url_user(url: str) -> str | None:
    try:
        return urlsplit(url).username
    except ValueError:
        return None


def parse_override_name(key: str) -> tuple[str, str] | None:
    """`WORKER_TASK_<NAME>__<FIELD>` -> (NAME, FIELD); the older `WORKER_SCHEDULE_<NAME>` -> (NAME, SCHEDULES)."""
    if key.startswith("WORKER_TASK_") and "__" in key:
        name, _, field = key.removeprefix("WORKER_TASK_").rpartition("__")
        return (name, field) if name and field else None
    if key.startswith("WORKER_SCHEDULE_") and len(key) > len("WORKER_SCHEDULE_"):
        return key.removeprefix("WORKER_SCHEDULE_"), "SCHEDULES"
    return None


def env_names() -> dict[str, str]:
    """Field name -> the environment variable a user sets (first alias wins)."""
    names: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            first = alias.choices[0]
            names[name] = first if isinstance(first, str) else name.upper()
        else:
            names[name] = f"WORKER_{name.upper()}"
    return names


def load_settings(**overrides: Any) -> Settings:
    """Build the settings or raise ConfigError with one line naming the setting and the problem."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    except SettingsError as exc:  # a complex value (JSON) that does not parse
        match = re.search(r'field "([a-z0-9_]+)"', str(exc))
        field = match.group(1) if match else ""
        name = env_names().get(field, field.upper() or "a setting")
        raise ConfigError(f"invalid setting: {name}: not valid JSON") from None


def _one_line(exc: ValidationError) -> str:
    env = env_names()
    problems = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else ""
        name = env.get(field, field.upper() if field else "settings")
        msg = err.get("msg", "invalid")
        if err.get("type") == "missing":
            msg = "is required"
        msg = msg.removeprefix("Value error, ")
        problems.append(f"{name}: {msg[:1].lower() + msg[1:]}" if field else msg)
    return "invalid setting: " + "; ".join(problems)
