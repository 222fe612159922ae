"""Live workers, as the daemons register them in `worker_nodes` (the registration loop is
worker/runtime/node_loop.py): who is alive, what runs where, and which task types no live worker serves. A row
not seen for GONE_LEASES lease periods counts as gone: it is never shown and the next registration of any daemon
deletes it (tests/test_nodes.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.db import translate
from worker.queue import Executor
from worker.sql import queries

__all__ = ["GONE_LEASES", "live_workers", "unserved_task_types"]

_Q = queries("nodes")

GONE_LEASES = 3.0
"""A worker not seen for this many of its lease periods is gone (tests/test_nodes.py)."""


async def live_workers(conn: Executor) -> list[dict[str, Any]]:
    """Live workers by id, each with `fresh` (seen within one lease period) and up to 10 running job ids."""
    with translate():
        rows: Sequence[Any] = await conn.fetch(_Q["live"], GONE_LEASES)
    return [dict(r) for r in rows]


async def unserved_task_types(conn: Executor, *, any_age: bool = False) -> list[dict[str, Any]]:
    """Task types (not paused) with due pending jobs (`any_age`: pending jobs, due or not) and no live worker that
    handles them: task_type, due, pending, oldest_s (the oldest due job's wait; None when none is due)."""
    with translate():
        rows: Sequence[Any] = await conn.fetch(_Q["unserved"], GONE_LEASES, any_age)
    return [dict(r) for r in rows]
