"""The soak's targets (issue 25) checked against its reports: a pure function of the rows bench/bench_soak.py
printed, so that a run is read the same way every time (tests/unit/test_soak_verdict.py).

The targets, as the issue states them and as read here:
* throughput: every report after the first minute within 10 % of the offered rate;
* oldest due job: under 5 s in every report;
* table plus index size flat after the first cleanup cycle: the size of the first report at or after
  FLAT_FROM_S (the first minute, a minute of retention, a minute for the cleanup that deletes it) against the
  largest after it, read as flat when that largest is at most 10 % above it (cleanup runs once a minute, so
  the size saws up and down within a cycle);
* 0 daemon restarts and 0 `job.lease_lost`;
* cleanup within a minute of its slot: every started cleanup's delay under 60 s, and after the first minute no
  run of reports spanning more than two minutes without a cleanup started (cleanups each started within a
  minute of their once-a-minute slots are never two minutes apart, so such a run is a slot that never ran).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["FLAT_FROM_S", "Report", "verdict"]

FLAT_FROM_S = 180.0


@dataclass(frozen=True)
class Report:
    t_s: float
    done_per_s: float
    oldest_due_s: float
    total_mb: float  # job_queue plus job_runs, with their indexes
    restarts: int
    lease_lost: int
    cleanup_delay_s: float | None  # the longest delay of the cleanups started in the interval; None: none started


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def verdict(reports: Sequence[Report], offered: float, interval_s: float) -> list[str]:
    """One line per target: the figure it is judged on, then `met` or `NOT MET`."""
    lines = []
    late = [r for r in reports if r.t_s > 60.0 + interval_s / 2]
    if late:
        low = min(r.done_per_s for r in late) / offered - 1
        high = max(r.done_per_s for r in late) / offered - 1
        lines.append(f"throughput after the first minute: {low:+.1%} / {high:+.1%} of {offered:,.0f} jobs/s "
                     f"(within 10 %): {_met(low >= -0.1 and high <= 0.1)}")
    else:
        lines.append("throughput after the first minute: no report after the first minute")
    if reports:
        oldest = max(r.oldest_due_s for r in reports)
        lines.append(f"oldest due job: at most {oldest:.1f} s (under 5 s): {_met(oldest < 5.0)}")
    settled = [r for r in reports if r.t_s >= FLAT_FROM_S - interval_s / 2]
    if settled:
        first, top = settled[0].total_mb, max(r.total_mb for r in settled)
        lines.append(f"job_queue + job_runs: {first:,.0f} MB at {settled[0].t_s:.0f} s, at most {top:,.0f} MB "
                     f"after, {settled[-1].total_mb:,.0f} MB last (at most 10 % above): {_met(top <= 1.1 * first)}")
    else:
        lines.append(f"job_queue + job_runs: no report at or after {FLAT_FROM_S:.0f} s")
    if reports:
        restarts, lost = reports[-1].restarts, reports[-1].lease_lost
        lines.append(f"daemon restarts {restarts}, job.lease_lost {lost}: {_met(restarts == 0 and lost == 0)}")
    delays = [r.cleanup_delay_s for r in reports if r.cleanup_delay_s is not None]
    span = math.ceil(120.0 / interval_s) + 1  # reports covering more than two minutes
    missed = run = 0
    for r in late:  # maximal runs of reports without a cleanup started, each counted once
        run = run + 1 if r.cleanup_delay_s is None else 0
        missed += run == span
    worst = max(delays) if delays else None
    lines.append(
        f"cleanup: longest delay {'-' if worst is None else f'{worst:.1f} s'}, spans over two minutes without one "
        f"started {missed} (within a minute of its slot): {_met(worst is not None and worst < 60.0 and missed == 0)}")
    return lines
