"""The worker process under test: `python -m bench.launch KIND --concurrency N [--batch-size N] [--latency]`.

Imports everything the system needs, writes BENCH_READY_FILE, then waits for one line on stdin before it
starts the system's worker: the harness starts its clock (and takes the CPU baseline) at that line, so the
figures measure the worker, not Python's import time.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.systems import adapter

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.launch")
    parser.add_argument("kind")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args(argv)
    system = adapter(args.kind)
    system.preload()
    ready = os.environ.get("BENCH_READY_FILE")
    if ready:
        with open(ready, "w") as f:
            f.write(str(os.getpid()))
    sys.stdin.readline()
    return int(system.run_worker(args.concurrency, args.batch_size, args.latency) or 0)


if __name__ == "__main__":
    sys.exit(main())
