"""The ceiling (bench/ceiling.py) in its `durable` mode: every claim commits durably and takes no more than the
free slots (rows `ceiling_durable`, `ceiling100_durable`)."""

from __future__ import annotations

from bench.ceiling import (
    MODE_ENV,
    REMAINING_SQL,
    SUCCEEDED_SQL,
    LatencyEnqueuer,
    enqueue_noop,
    install,
    preload,
    run_worker,
)

__all__ = [
    "REMAINING_SQL", "SUCCEEDED_SQL", "LatencyEnqueuer", "enqueue_noop", "install", "preload", "process_env",
    "run_worker",
]


def process_env(dsn: str, concurrency: int, batch_size: int | None) -> dict[str, str]:
    return {"BENCH_DSN": dsn, MODE_ENV: "durable"}
