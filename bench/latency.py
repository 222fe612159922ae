"""Wake-up latency recording, shared by every system's latency handler (in the worker process).

The harness puts the enqueue timestamp (`time.time()` taken right before the INSERT) in the job; the handler
calls `record(t)`, which appends `now - t` in seconds as one line to the file named by BENCH_LATENCY_FILE.
"""

from __future__ import annotations

import os
import time
from typing import TextIO

__all__ = ["ENV", "read", "record"]

ENV = "BENCH_LATENCY_FILE"
_file: TextIO | None = None


def record(enqueued_at: float) -> None:
    now = time.time()
    global _file
    if _file is None:
        _file = open(os.environ[ENV], "a", buffering=1)  # noqa: SIM115 - kept open for the process's life
    _file.write(f"{now - float(enqueued_at):.6f}\n")


def read(path: str) -> list[float]:
    try:
        with open(path) as f:
            return [float(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
