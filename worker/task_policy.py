"""Per-task policy overrides from the environment, and a task's effective policy.

One form for every field of a task's policy: `WORKER_TASK_<NAME>__<FIELD>`, NAME the task type upper-cased with
every character that is not a letter or digit replaced by `_`, FIELD a field of `worker.tasks.Task` (TIMEOUT_S,
MAX_ATTEMPTS, PRIORITY, BACKOFF_BASE_S, SCHEDULES, ...). The fields are found from the dataclass itself, so a
field added to Task gets its override with no change here. The older `WORKER_TASK_TIMEOUTS_S` (JSON) and
`WORKER_SCHEDULE_<NAME>` still apply (the new form wins). Every value is checked when the worker starts: a bad
one is a ConfigError naming the variable (one line, exit 2; tests/test_task_policy.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError

from worker.backoff import BackoffPolicy
from worker.errors import ConfigError, WorkerError
from worker.settings import Settings
from worker.tasks import Registry, Task

__all__ = ["apply_overrides", "backoff_for", "effective_policy", "env_key", "override_fields", "timeout_for"]

NOT_POLICY = frozenset({"name", "handler", "payload_model", "settings_model"})
"""Fields of Task that declare what the task is, not how it is run: not overridable."""


def env_key(task_name: str) -> str:
    """The NAME part of `WORKER_TASK_<NAME>__<FIELD>` for a task type."""
    return re.sub(r"[^A-Z0-9]", "_", task_name.upper())


def override_fields() -> dict[str, Any]:
    """Overridable field name -> its type, from the Task dataclass."""
    hints = typing.get_type_hints(Task)
    return {f.name: hints[f.name] for f in dataclasses.fields(Task) if f.name not in NOT_POLICY}


def _optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType | typing._UnionGenericAlias) and type(None) in typing.get_args(hint)  # type: ignore[attr-defined]


def _parse(hint: Any, text: str) -> Any:
    """An environment value as the field's type: '' or 'none' is None for an optional field; a tuple of strings
    (schedules) is a JSON array or one value ('' = none)."""
    stripped = text.strip()
    if _optional(hint) and stripped.lower() in ("", "none", "null"):
        return None
    if typing.get_origin(hint) is tuple:
        value = json.loads(stripped) if stripped.startswith("[") else [stripped] if stripped else []
        return TypeAdapter(hint).validate_python(value)
    return TypeAdapter(hint).validate_python(stripped)


def apply_overrides(registry: Registry, settings: Settings) -> Registry:
    """A registry of the same tasks with the environment's overrides applied; ConfigError on a bad one."""
    fields = override_fields()
    by_key = {env_key(t.name): t for t in registry}
    for key, values in settings.task_overrides.items():
        if key not in by_key:
            first = next(iter(values))
            raise ConfigError(
                f"invalid setting: WORKER_TASK_{key}__{first}: no discovered task is named {key.lower()!r} "
                f"(tasks: {', '.join(registry.names())})"
            )
    out = Registry()
    for task in registry:
        changes: dict[str, Any] = {}
        legacy = settings.task_timeouts_s.get(task.name)
        if legacy is not None:
            changes["timeout_s"] = legacy
        for field, text in settings.task_overrides.get(env_key(task.name), {}).items():
            env = f"WORKER_TASK_{env_key(task.name)}__{field}"
            name = field.lower()
            if name not in fields:
                raise ConfigError(
                    f"invalid setting: {env}: {task.name} has no policy field {name!r} "
                    f"(fields: {', '.join(f.upper() for f in fields)})"
                )
            try:
                changes[name] = _parse(fields[name], text)
            except (ValidationError, ValueError) as exc:
                raise ConfigError(f"invalid setting: {env}: {_short(exc)}") from None
        try:
            out.add(dataclasses.replace(task, **changes) if changes else task)
        except (ValueError, WorkerError) as exc:
            names = ", ".join(f"WORKER_TASK_{env_key(task.name)}__{f.upper()}" for f in changes)
            raise ConfigError(f"invalid setting: {names}: {exc}") from None
    return out


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def timeout_for(task: Task[Any], settings: Settings) -> float:
    return task.timeout_s if task.timeout_s is not None else settings.task_timeout_s


def backoff_for(task: Task[Any], settings: Settings) -> BackoffPolicy:
    base = task.backoff_base_s if task.backoff_base_s is not None else settings.backoff_base_s
    cap = task.backoff_max_s if task.backoff_max_s is not None else settings.backoff_max_s
    jitter = task.backoff_jitter if task.backoff_jitter is not None else settings.backoff_jitter
    return BackoffPolicy(base, max(cap, base), jitter)


def effective_policy(task: Task[Any], settings: Settings) -> dict[str, Any]:
    """Every policy field after overrides, the settings' defaults filled in (what `worker tasks` shows)."""
    policy: dict[str, Any] = {name: getattr(task, name) for name in override_fields()}
    policy["timeout_s"] = timeout_for(task, settings)
    if policy.get("max_attempts") is None:
        policy["max_attempts"] = settings.default_max_attempts
    backoff = backoff_for(task, settings)
    policy.update(backoff_base_s=backoff.base_s, backoff_max_s=backoff.max_s, backoff_jitter=backoff.jitter)
    policy["schedules"] = list(task.schedules)
    return policy
