"""`worker tasks`: every discovered task, where it came from, its effective policy and its schedules; and the
discovery every command that needs tasks shares (`worker run --tasks`, enqueue, run-now, pause, doctor, ...)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from worker.cli.output import print_json, print_table
from worker.discovery import Discovered, config_secrets, load_task_configs
from worker.service import discover_tasks
from worker.settings import Settings
from worker.task_policy import effective_policy
from worker.tasks import Registry

__all__ = ["add_parsers", "discovered", "forget", "load", "registry", "secrets"]

_found: dict[str, Discovered] = {}
NEEDS_TASKS = frozenset({"run", "tasks", "enqueue", "jobs", "pause", "resume", "doctor", "schedules"})


def load(settings: Settings, args: argparse.Namespace) -> Discovered:
    """Discover once per process (ConfigError naming the culprit); `--tasks` adds module:attribute specs."""
    if "found" not in _found:
        _found["found"] = discover_tasks(settings, getattr(args, "tasks", None) or ())
    return _found["found"]


def forget() -> None:
    _found.clear()


def discovered(settings: Settings) -> Discovered:
    return _found["found"] if "found" in _found else discover_tasks(settings)


def registry(settings: Settings) -> Registry:
    """Every discovered task (enqueueing and pausing accept any of them, whichever replica runs it)."""
    return discovered(settings).every


def secrets(found: Discovered) -> list[str]:
    """The secrets in the tasks' own settings (loaded and checked now: ConfigError when a value is bad)."""
    return config_secrets(load_task_configs(found.enabled))


def rows(settings: Settings, found: Discovered) -> list[dict[str, Any]]:
    from worker.schedules import schedules_of  # croniter: only for this command

    now = datetime.now(UTC)
    out = []
    for task in found.every:
        policy = effective_policy(task, settings)
        schedules = [
            {"name": s.name, "cron": s.cron, "priority": s.priority,
             "next": s.next_slot(now) if settings.schedules_enabled else None}
            for s in schedules_of(Registry.of([task]))
        ]
        out.append({
            "name": task.name, "enabled": task.name in found.enabled, "source": found.sources.get(task.name, "?"),
            "description": task.description, "payload": task.payload_model.__name__, "policy": policy,
            "schedules": schedules,
        })
    return out


async def cmd_tasks(settings: Settings, args: argparse.Namespace) -> int:
    found = load(settings, args)
    listed = rows(settings, found)
    if args.json:
        print_json({"tasks": listed})
        return 0
    table = []
    for r in listed:
        p = r["policy"]
        table.append({
            "name": r["name"], "enabled": r["enabled"], "source": r["source"], "timeout_s": p["timeout_s"],
            "max_attempts": p["max_attempts"], "priority": p["priority"],
            "backoff": f"{p['backoff_base_s']:g}..{p['backoff_max_s']:g}s ±{p['backoff_jitter']:g}",
            "schedules": ", ".join(s["cron"] for s in r["schedules"]) or "-",
        })
    print_table(table, ["name", "enabled", "source", "timeout_s", "max_attempts", "priority", "backoff",
                        "schedules"], max_width=60)
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("tasks", parents=[common], help="the discovered tasks: source, effective policy, schedules")
    p.add_argument("--tasks", action="append", metavar="MODULE:ATTR", help="also load these tasks (repeatable)")
    p.set_defaults(handler=cmd_tasks)
