"""A task for the fault tests that records when each attempt's handler really starts and stops (wall clock, one
JSON line per event, appended to the file named by MARKED_FILE), loaded into a worker process with
WORKER_TASK_MODULES=tests.support.marked_task:tasks. Attempt 1 sleeps `sleep_s`; later attempts end at once."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import anyio
from pydantic import BaseModel

from worker.tasks import Task, TaskContext

__all__ = ["marks", "tasks"]


class MarkedPayload(BaseModel):
    sleep_s: float = 0.0


def _mark(ctx: TaskContext, event: str) -> None:
    line = json.dumps({"attempt": ctx.job.attempt, "event": event, "t": time.time(), "worker_id": ctx.worker_id})
    with open(os.environ["MARKED_FILE"], "a", encoding="utf-8") as f:
        f.write(line + "\n")


async def marked(payload: MarkedPayload, ctx: TaskContext) -> None:
    _mark(ctx, "start")
    try:
        if ctx.job.attempt == 1:
            await anyio.sleep(payload.sleep_s)
    finally:
        _mark(ctx, "end")


def tasks() -> list[Task[Any]]:
    return [Task("marked", marked, MarkedPayload, max_attempts=5, description="records its attempts' real times")]


def marks(path: str) -> dict[tuple[int, str], float]:
    """(attempt, 'start'|'end') -> wall-clock time, from the file the task wrote."""
    out: dict[tuple[int, str], float] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = json.loads(line)
            out.setdefault((m["attempt"], m["event"]), m["t"])
    return out
