"""`worker run` plus one bench-only task type, `bench_latency`, whose handler records now - enqueue time.

Same settings, daemon and default registry as `worker run` (worker/cli/main.py): only the registry gains a task.
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from bench import latency
from worker.builtin import default_registry
from worker.errors import ConfigError, WorkerError
from worker.logs import configure_logging
from worker.service import serve
from worker.settings import Settings, load_settings
from worker.tasks import Registry, Task, TaskContext

__all__ = ["TASK_TYPE", "LatencyPayload", "bench_latency", "main", "registry"]

TASK_TYPE = "bench_latency"


class LatencyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    t: float


async def bench_latency(payload: LatencyPayload, ctx: TaskContext) -> Any:
    latency.record(payload.t)
    return None


def registry(settings: Settings) -> Registry:
    reg = default_registry(settings)
    reg.add(Task(TASK_TYPE, bench_latency, LatencyPayload, description="Benchmark: records wake-up latency."))
    return reg


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"worker: error: {exc}")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        return anyio.run(lambda: serve(settings, registry(settings)))
    except WorkerError as exc:
        print(f"worker: error: {exc}")
        return 1
