"""The rows of the comparison: which system, at what concurrency, with which settings."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

__all__ = ["ADAPTERS", "SYSTEMS", "System", "adapter", "installed"]

ADAPTERS = {
    "worker": "bench.sys_worker",
    "ceiling": "bench.ceiling",
    "ceiling_durable": "bench.ceiling_durable",
    "pgqueuer": "bench.peer_pgqueuer",
    "procrastinate": "bench.peer_procrastinate",
}
_PACKAGES = {"pgqueuer": "pgqueuer", "procrastinate": "procrastinate"}


@dataclass(frozen=True, slots=True)
class System:
    name: str
    kind: str
    concurrency: int
    batch_size: int | None = None
    note: str = ""


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System("worker", "worker", 10, note="`worker run`, default settings, concurrency 10"),
        System("worker100", "worker", 100, note="`worker run`, default settings, concurrency 100"),
        System("ceiling", "ceiling", 10, note=(
            "hand-written asyncpg queue (bench/ceiling.py) with worker's claim durability (synchronous_commit off"
            " for claims) and claim-ahead, concurrency 10")),
        System("ceiling100", "ceiling", 100, note="the same at concurrency 100"),
        System("ceiling_durable", "ceiling_durable", 10, note=(
            "the hand-written queue with durable claims of no more than the free slots, concurrency 10")),
        System("ceiling100_durable", "ceiling_durable", 100, note="the same at concurrency 100"),
        System("pgqueuer", "pgqueuer", 10, 10, note="pgqueuer defaults (batch_size 10)"),
        System("pgqueuer_tuned", "pgqueuer", 10, 100, note="pgqueuer, documented short-job tuning: batch_size 100"),
        System("procrastinate", "procrastinate", 10, note="procrastinate defaults, worker concurrency 10"),
    )
}


def adapter(kind: str) -> ModuleType:
    return importlib.import_module(ADAPTERS[kind])


def installed(kind: str) -> bool:
    package = _PACKAGES.get(kind)
    return package is None or importlib.util.find_spec(package) is not None
