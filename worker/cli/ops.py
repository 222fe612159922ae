"""`worker pause|resume|cleanup|schedules|doctor`: the operator commands that act on the whole queue."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from worker import db, operations
from worker.cli import tasks as cli_tasks
from worker.cli.output import print_json, print_table
from worker.errors import UnknownTaskType
from worker.settings import Settings
from worker.sql import queries

__all__ = ["add_parsers"]

Args = argparse.Namespace


def _conn(settings: Settings) -> Any:
    return db.connection(settings.dsn, connect_timeout_s=settings.db_connect_timeout_s, app="worker-cli")


def _target(task_type: str | None) -> str:
    return operations.ALL_TASK_TYPES if task_type in (None, "all", "*") else str(task_type)


async def cmd_pause(settings: Settings, args: Args) -> int:
    target = _target(args.task_type)
    if target != operations.ALL_TASK_TYPES:
        cli_tasks.registry(settings).get(target)  # unknown task type -> error, nothing paused
    async with _conn(settings) as conn:
        row = await operations.pause(conn, target, by=args.by or f"cli:{settings.worker_id}", reason=args.reason)
    if args.json:
        print_json(row)
    else:
        what = "all task types" if target == operations.ALL_TASK_TYPES else target
        print(f"paused {what} (since {row['paused_at'].isoformat()}); `worker resume"
              + ("" if target == operations.ALL_TASK_TYPES else f" {target}") + "` to lift")
    return 0


async def cmd_resume(settings: Settings, args: Args) -> int:
    target = _target(args.task_type)
    async with _conn(settings) as conn:
        known = target == operations.ALL_TASK_TYPES or target in cli_tasks.registry(settings)
        if not known and target not in await operations.paused_task_types(conn):
            raise UnknownTaskType(f"unknown task type {target!r}")
        lifted = await operations.resume(conn, target)
        still = await operations.paused_task_types(conn)
    what = "all task types" if target == operations.ALL_TASK_TYPES else target
    if args.json:
        print_json({"task_type": target, "resumed": lifted, "still_paused": still})
    else:
        print(f"resumed {what}" if lifted else f"{what} was not paused")
        if still:
            print(f"still paused: {', '.join(still)}")
    return 0


async def cmd_cleanup(settings: Settings, args: Args) -> int:
    succeeded = (
        operations.parse_duration(args.older_than) if args.older_than
        else timedelta(days=settings.retention_succeeded_days)
    )
    failed_after = (
        operations.parse_duration(args.failed_older_than) if args.failed_older_than
        else max(timedelta(days=settings.retention_failed_days), succeeded)
    )
    async with _conn(settings) as conn:
        result = await operations.cleanup(
            conn, succeeded_older_than=succeeded, failed_older_than=failed_after,
            batch_size=args.batch_size or settings.cleanup_batch_size,
            duty_cycle_percent=settings.cleanup_duty_cycle_percent,
        )
    if args.json:
        print_json(result.as_dict())
    else:
        print(f"deleted {result.jobs} job(s) ({result.succeeded} succeeded, {result.jobs - result.succeeded} "
              f"failed/cancelled) and {result.runs} attempt record(s) in {result.batches} batch(es)")
    return 0


async def cmd_schedules(settings: Settings, args: Args) -> int:
    from worker.schedules import schedules_of  # croniter: only for this command

    now = datetime.now(UTC)
    async with _conn(settings) as conn:
        state = {r["name"]: dict(r) for r in await conn.fetch(queries("operator")["schedules"])}
    rows = []
    found = cli_tasks.discovered(settings)
    for s in schedules_of(found.enabled, declared=found.declared):
        st = state.get(s.name, {})
        enabled = s.enabled and settings.schedules_enabled
        rows.append({
            "name": s.name, "cron": s.cron or "-", "task_type": s.task_type, "enabled": enabled,
            "next": s.next_slot(now) if enabled else None, "last_slot": st.get("last_slot"),
            "last_enqueued_at": st.get("last_enqueued_at"), "last_job_id": st.get("last_job_id"),
            "last_job_status": st.get("last_job_status"),
        })
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "cron", "enabled", "next", "last_enqueued_at", "last_job_id",
                           "last_job_status"])
    return 0


async def cmd_doctor(settings: Settings, args: Args) -> int:
    from worker.cli.doctor import failed, run_checks  # httpx and the checks: only for this command

    checks = await run_checks(settings, cli_tasks.registry(settings), url=args.url)
    if args.json:
        print_json({"ok": not failed(checks), "checks": [c.as_dict() for c in checks]})
    else:
        print_table([c.as_dict() for c in checks], ["status", "name", "figure", "detail"], max_width=100)
    return 1 if failed(checks) else 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("pause", parents=[common], help="stop automatic processing of a task type (or all)")
    p.add_argument("task_type", nargs="?", help="a task type; omit (or 'all') for every task type")
    p.add_argument("--reason", default=None)
    p.add_argument("--by", default=None, help="who paused (shown by doctor)")
    p.set_defaults(handler=cmd_pause)
    p = sub.add_parser("resume", parents=[common], help="lift a pause")
    p.add_argument("task_type", nargs="?", help="a task type; omit (or 'all') for the global pause")
    p.set_defaults(handler=cmd_resume)
    p = sub.add_parser("cleanup", parents=[common], help="delete finished jobs past their retention, in batches")
    p.add_argument("--older-than", help="succeeded jobs older than this (default WORKER_RETENTION_SUCCEEDED_DAYS)")
    p.add_argument("--failed-older-than",
                   help="failed/cancelled jobs older than this (default WORKER_RETENTION_FAILED_DAYS)")
    p.add_argument("--batch-size", type=int, default=None)
    p.set_defaults(handler=cmd_cleanup)
    p = sub.add_parser("schedules", parents=[common], help="the recurring schedules, next fire, last job")
    p.set_defaults(handler=cmd_schedules)
    p = sub.add_parser("doctor", parents=[common], help="run the troubleshooting checklist (exit 1 on a fail)")
    p.add_argument("--url", default=None, help="also check this daemon's /readyz (e.g. http://127.0.0.1:8080)")
    p.set_defaults(handler=cmd_doctor)
