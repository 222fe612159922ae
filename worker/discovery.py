"""Finding the tasks a worker runs: installed packages' `worker.tasks` entry points, `WORKER_TASK_MODULES` and
`worker run --tasks`, each naming a Task, a callable returning a Task or tasks, an iterable of tasks, or a
Registry. The built-in tasks come through this package's own entry points like anyone's; this module names none of
them (the composition root passes them in as the fallback: worker/service.py, the import contracts in pyproject.toml).

Anything wrong is a ConfigError naming the culprit (one line, exit 2, before anything connects): a module that
does not import, an attribute that is not a task, two tasks with one name, an override or allow-list entry that
names no task (tests/test_discovery.py).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from worker.errors import ConfigError, WorkerError
from worker.settings import Settings
from worker.task_policy import apply_overrides
from worker.tasks import Registry, Task

__all__ = [
    "ENTRY_POINT_GROUP", "Discovered", "discover", "load_target", "load_task_configs", "task_setting_names",
]

ENTRY_POINT_GROUP = "worker.tasks"


@dataclass(slots=True)
class Discovered:
    every: Registry
    """Every discovered task, overrides applied (what enqueueing validates against)."""
    enabled: Registry
    """The tasks this replica runs (WORKER_TASKS_ENABLED; every task when unset)."""
    sources: dict[str, str] = field(default_factory=dict)
    declared: Registry = field(default_factory=Registry)
    """Every discovered task as declared, before the environment's overrides."""
    """Task type -> where it came from: `entry point <name> (<dist>)` or `module <module:attribute>`."""


def _tasks_of(value: Any, culprit: str) -> list[Task[Any]]:
    """The tasks an entry point or module attribute names; ConfigError when it names none."""
    if isinstance(value, Task | Registry):
        return [value] if isinstance(value, Task) else list(value)
    if isinstance(value, type):
        raise ConfigError(f"tasks: {culprit} is not a task (the class {value.__name__}): name a Task, a list of "
                          "tasks, or a callable returning them")
    if callable(value):
        try:
            value = value()
        except Exception as exc:
            raise ConfigError(f"tasks: {culprit} failed: {type(exc).__name__}: {_first_line(exc)}") from None
        if isinstance(value, Task | Registry):
            return [value] if isinstance(value, Task) else list(value)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | dict):
        items = list(value)
        bad = [i for i in items if not isinstance(i, Task)]
        if not bad and items:
            return items
        if bad:
            raise ConfigError(f"tasks: {culprit} holds something that is not a task: {type(bad[0]).__name__}")
    raise ConfigError(f"tasks: {culprit} is not a task (a {type(value).__name__}): name a Task, a list of "
                      "tasks, or a callable returning them")


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def load_target(spec: str) -> Any:
    """`module:attribute` (attribute may be dotted) -> the object; ConfigError naming the spec."""
    module_name, sep, attr = spec.strip().partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"tasks: {spec.strip()!r} is not module:attribute")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"tasks: cannot import {module_name!r} ({spec.strip()}): {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"tasks: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _entry_points(own_tasks: Callable[[], Iterable[Task[Any]]]) -> list[tuple[str, Any, str]]:
    """(name, loader, source) of every installed `worker.tasks` entry point; `own_tasks()` (this package's
    built-ins) when its own metadata lists none (run from a source tree, or installed from an older build)."""
    found: list[tuple[str, Any, str]] = []
    own = False
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        own = own or dist == "worker"
        found.append((ep.name, ep, f"entry point {ep.name} ({dist})"))
    if not own:
        found[:0] = [(t.name, t, "built-in (worker)") for t in own_tasks()]
    return found


def discover(
    settings: Settings, extra: Sequence[str] = (), *, own_tasks: Callable[[], Iterable[Task[Any]]] = tuple
) -> Discovered:
    """Every task from entry points, WORKER_TASK_MODULES and `extra` (`--tasks`), overrides applied, and the
    allow-list applied; ConfigError naming the culprit on any problem. `own_tasks`: what this package's own entry
    points name, used when its installed metadata lists none (`worker.service.discover_tasks` passes the
    built-ins)."""
    collected: list[tuple[Task[Any], str]] = []
    for _name, loader, source in _entry_points(own_tasks):
        if isinstance(loader, Task):
            collected.append((loader, source))
            continue
        try:
            value = loader.load()
        except Exception as exc:
            raise ConfigError(
                f"tasks: cannot load {source} = {loader.value}: {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        collected.extend((t, source) for t in _tasks_of(value, source))
    specs = [s for s in settings.task_modules.split(",") if s.strip()] + [s for s in extra if s.strip()]
    for spec in specs:
        source = f"module {spec.strip()}"
        collected.extend((t, source) for t in _tasks_of(load_target(spec), source))
    registry = Registry()
    sources: dict[str, str] = {}
    for task, source in collected:
        if task.name in sources:
            if sources[task.name] == source and registry.get(task.name) is task:
                continue
            raise ConfigError(f"tasks: task type {task.name!r} is declared twice: by {sources[task.name]} "
                              f"and by {source}")
        try:
            registry.add(task)
        except WorkerError as exc:
            raise ConfigError(f"tasks: {source}: {exc}") from None
        sources[task.name] = source
    every = apply_overrides(registry, settings)
    wanted = [n.strip() for n in settings.tasks_enabled.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in every]
    if unknown:
        raise ConfigError(f"invalid setting: WORKER_TASKS_ENABLED: no discovered task is named {unknown[0]!r} "
                          f"(tasks: {', '.join(every.names())})")
    enabled = every
    if wanted:
        enabled = Registry()
        for task in every:
            if task.name in wanted:
                enabled.add(task)
    return Discovered(every, enabled, sources, registry)


def load_task_configs(
    registry: Registry, given: Iterable[BaseSettings] = ()
) -> dict[type[BaseSettings], BaseSettings]:
    """Each task's own settings class: the instance `given` (embedding, the demo), or loaded from the environment
    now, a bad value being a ConfigError naming the variable (one line, exit 2)."""
    configs: dict[type[BaseSettings], BaseSettings] = {type(c): c for c in given}
    for task in registry:
        model = task.settings_model
        if model is None or model in configs:
            continue
        try:
            configs[model] = model()
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ())) or "settings"
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            raise ConfigError(f"invalid setting: {_env_name(model, loc)}: {msg} (task {task.name})") from None
    return configs


def _env_name(model: type[BaseSettings], field_name: str) -> str:
    info = model.model_fields.get(field_name)
    if info is None:  # the error is located at the alias the value came in by
        return field_name.upper()
    alias = getattr(info, "validation_alias", None) if info is not None else None
    choices = getattr(alias, "choices", None)
    if choices and isinstance(choices[0], str):
        return choices[0]
    prefix = str(model.model_config.get("env_prefix", ""))
    return f"{prefix}{field_name}".upper()


def task_setting_names(registry: Registry) -> dict[str, tuple[type[BaseSettings], str]]:
    """Every environment variable the tasks' own settings read (`Task.settings_model`): name -> (model, field),
    for the deploy files' and .env.example's checks (tests/test_deploy_manifests.py)."""
    found: dict[str, tuple[type[BaseSettings], str]] = {}
    for task in registry:
        if task.settings_model is not None:
            for field in task.settings_model.model_fields:
                found[_env_name(task.settings_model, field)] = (task.settings_model, field)
    return found


def config_secrets(configs: dict[type[BaseSettings], BaseSettings]) -> list[str]:
    """Every SecretStr value in the tasks' settings, for redaction."""
    from pydantic import SecretStr

    out: list[str] = []
    for config in configs.values():
        for name in type(config).model_fields:
            value = getattr(config, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
    return out
