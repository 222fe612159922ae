"""Built-in task types: `noop` (noop.py) and `cleanup` (cleanup.py). They register through the `worker.tasks`
entry points like anyone's (pyproject.toml) and know only the core's task API: the import contracts in
pyproject.toml forbid them the runtime and the faces.
"""

from __future__ import annotations

from typing import Any

from worker.tasks import Registry, Task

__all__ = ["builtin_tasks", "default_registry"]


def builtin_tasks() -> list[Task[Any]]:
    """The tasks this package ships, as its entry points name them (the fallback when the installed metadata
    lists no entry points: worker/discovery.py)."""
    from worker.builtin.cleanup import cleanup_task
    from worker.builtin.noop import noop_task
    from worker.game_platform.task import game_platform_sync_task

    return [noop_task(), cleanup_task(), game_platform_sync_task()]


def default_registry(_unused: object = None) -> Registry:
    """The built-in tasks, as declared (no discovery, no overrides): for tests and embedding. The argument is
    ignored (callers written before discovery passed the settings)."""
    registry = Registry()
    for task in builtin_tasks():
        registry.add(task)
    return registry
