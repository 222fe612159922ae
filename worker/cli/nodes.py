"""`worker workers`: the live worker daemons (worker_nodes), as a table or --json."""

from __future__ import annotations

import argparse
from typing import Any

from worker import db
from worker.cli.output import print_json, print_table
from worker.nodes import live_workers, unserved_task_types
from worker.settings import Settings

__all__ = ["add_parsers"]


async def cmd_workers(settings: Settings, args: argparse.Namespace) -> int:
    async with db.connection(settings.dsn, connect_timeout_s=settings.db_connect_timeout_s, app="worker-cli") as conn:
        workers = await live_workers(conn)
        unserved = await unserved_task_types(conn)
    if args.json:
        print_json({"workers": workers, "unserved": unserved})
        return 0
    rows = [{**w, "task_types": ",".join(w["task_types"]), "last_seen": f"{w['seen_s_ago']:.1f}s ago",
             "running": f"{w['running']}/{w['concurrency']}"} for w in workers]
    if rows:
        print_table(rows, ["worker_id", "host", "pid", "version", "task_types", "running", "started_at", "last_seen"])
    else:
        print("no live worker")
    for u in unserved:
        print(f"no live worker handles {u['task_type']}: {u['due']} due job(s), oldest {u['oldest_s']:.0f} s")
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("workers", parents=[common], help="the live worker daemons and what they run")
    p.set_defaults(handler=cmd_workers)
