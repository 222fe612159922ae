"""The plans a claim really ran, nested statements included (job_queue_pick's query): auto_explain's EXPLAIN
(ANALYZE, BUFFERS, FORMAT JSON), sent to the session as notices."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from worker import queue


async def claim_plans(
    conn: asyncpg.Connection, *, task_types: list[str] | None = None, limit: int = 110
) -> tuple[list[dict[str, Any]], int]:
    """Claim once as the daemon does; returns every plan the claim executed and how many jobs it claimed."""
    notices: list[str] = []

    def listener(_c: object, msg: asyncpg.PostgresLogMessage) -> None:
        notices.append(msg.message)

    await conn.execute(
        "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;"
        " SET auto_explain.log_buffers = on; SET auto_explain.log_nested_statements = on;"
        " SET auto_explain.log_format = json; SET auto_explain.log_level = notice;"
    )
    conn.add_log_listener(listener)
    try:
        jobs = await queue.claim(conn, worker_id="w", task_types=task_types or ["noop"], limit=limit, lease_s=30)
    finally:
        conn.remove_log_listener(listener)
        await conn.execute("SET auto_explain.log_min_duration = -1")
    plans = []
    for text in notices:
        start = text.find("{")
        if start >= 0:
            plans.append(json.loads(text[start:])["Plan"])
    assert plans, notices
    return plans, len(jobs)


def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found += nodes(child)
    return found


def sorts_over_job_queue(node: dict[str, Any]) -> list[str]:
    """Sort nodes whose input (not their init plans) reads job_queue."""
    bad = []
    for n in nodes(node):
        if "Sort" in n["Node Type"]:
            inputs = [c for c in n.get("Plans", []) if c.get("Parent Relationship") == "Outer"]
            if any(m.get("Relation Name") == "job_queue" for c in inputs for m in nodes(c)):
                rows = sum(int(c.get("Actual Rows", 0)) for c in inputs)
                bad.append(f"{n['Node Type']} of {rows} rows (estimated {n.get('Plan Rows')})")
    return bad
