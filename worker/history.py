"""History at a glance, read from the database: the overview's charts (finished attempts per interval by
outcome, due queue depth and the oldest due age) and each schedule's track record (its last SLOTS slots).

The charts read the per-minute ledger rollup and the once-a-minute queue samples that the daemons write
(worker/nodes.py), and the ledger itself only after the rollup's end, so their cost is bounded by the window's
minutes, not by the ledger's rows (docs/performance.md). A schedule's slots come from its cron expression and
its jobs from their dedupe keys (`schedule:<name>:<slot>`, job_queue_schedule_slot_idx).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from worker.db import translate
from worker.errors import InvalidInput
from worker.queue import Executor
from worker.schedules import Schedule, schedules_of
from worker.settings import Settings
from worker.sql import queries
from worker.tasks import Registry

__all__ = ["SLOTS", "WINDOWS", "charts", "parse_window", "track_records"]

_Q = queries("history")
_OP = queries("operator")

WINDOWS: dict[str, tuple[int, int]] = {"hour": (3600, 60), "day": (86400, 900), "week": (7 * 86400, 3600)}
"""window name -> (length in seconds, bucket in seconds)."""
SLOTS = 24
DUE_GRACE_S = 120.0
"""A slot without a job is 'due' (not missed) for this long: the scheduler fires within a second of it."""
FAILED_STATES = ("failed", "missed")
FINAL_STATES = ("succeeded", "failed", "cancelled", "missed", "skipped")
THROUGHPUT = {"succeeded": "succeeded", "retry": "retried", "abandoned": "retried", "failed": "failed"}
"""Ledger outcome -> chart series ('interrupted' attempts are handed back at shutdown and not shown)."""


def parse_window(raw: str | None) -> str:
    window = raw or "hour"
    if window not in WINDOWS:
        raise InvalidInput(f"window must be one of {', '.join(WINDOWS)}, not {raw!r}")
    return window


async def charts(conn: Executor, now: datetime, window: str = "hour", task_type: str | None = None) -> dict[str, Any]:
    """Series aligned on `buckets` (Unix seconds of each bucket's start; the last one holds `now`)."""
    length, step = WINDOWS[window]
    end = datetime.fromtimestamp((int(now.timestamp()) // step + 1) * step, UTC)
    since = end - timedelta(seconds=length)
    with translate():
        rolled = await conn.fetchval(_Q["rolled_until"])
        if rolled is None:
            rolled = datetime.min.replace(tzinfo=UTC)
        runs = await conn.fetch(_Q["throughput"], since, float(step), task_type, rolled)
        depth = await conn.fetch(_Q["queue_depth"], since, float(step), task_type)
    n = length // step
    start = int(since.timestamp())
    buckets = [start + i * step for i in range(n)]
    series: dict[str, list[float | None]] = {k: [0] * n for k in ("succeeded", "retried", "failed")}
    series.update(due_pending=[None] * n, oldest_due_age_s=[None] * n)
    for r in runs:
        name = THROUGHPUT.get(r["outcome"])
        i = (int(r["bucket"].timestamp()) - start) // step
        if name is not None and 0 <= i < n:
            series[name][i] = (series[name][i] or 0) + int(r["n"])
    for r in depth:
        i = (int(r["bucket"].timestamp()) - start) // step
        if 0 <= i < n:
            series["due_pending"][i] = int(r["due_pending"])
            series["oldest_due_age_s"][i] = round(float(r["oldest_due_age_s"]), 3)
    return {"window": window, "bucket_s": step, "task_type": task_type, "buckets": buckets, **series}


@dataclass(frozen=True, slots=True)
class _Known:
    schedule: Schedule
    enabled: bool
    row: dict[str, Any]


def _slots(cron: str, now: datetime, count: int) -> list[datetime]:
    it = croniter(cron, now + timedelta(microseconds=1))
    out = [it.get_prev(datetime).astimezone(UTC) for _ in range(count)]
    return out[::-1]


def _state(job: dict[str, Any] | None, slot: datetime, now: datetime, start: datetime | None,
           jobs: Iterable[dict[str, Any]]) -> str:
    if job is not None:
        return str(job["status"])
    if (now - slot).total_seconds() < DUE_GRACE_S:
        return "due"
    if start is None or slot < start:
        return "none"
    for other in jobs:
        began, ended = other["started_at"], other["finished_at"]
        if began is not None and began <= slot and (ended is None or ended > slot):
            return "skipped"
    return "missed"


def _record(k: _Known, jobs_by_key: dict[str, dict[str, Any]], now: datetime, slots: int) -> dict[str, Any]:
    s = k.schedule
    times = _slots(s.cron, now, slots)
    found = {t: jobs_by_key.get(s.dedupe_key(t)) for t in times}
    with_job = [t for t, j in found.items() if j is not None]
    last_slot = k.row.get("last_slot")
    if with_job:
        start: datetime | None = min(with_job)
    elif last_slot is not None:
        start = last_slot + timedelta(microseconds=1)  # registered then: the registration slot itself has no job
    else:
        start = None
    mine = [j for j in found.values() if j is not None]
    strip = []
    for t in times:
        job = found[t]
        state = _state(job, t, now, start, mine)
        duration = None
        if job is not None and job["duration_s"] is not None:
            duration = round(float(job["duration_s"]), 3)
        elif job is not None and job["status"] == "running" and job["started_at"] is not None:
            duration = round((now - job["started_at"]).total_seconds(), 3)
        strip.append({"slot": t, "state": state, "job_id": job["id"] if job else None, "duration_s": duration,
                      "error": job["last_error"] if job and state == "failed" else None})
    finals = [x for x in strip if x["state"] in FINAL_STATES]
    consecutive = 0
    for x in reversed(finals):
        if x["state"] not in FAILED_STATES:
            break
        consecutive += 1
    successes = [found[t] for t, x in zip(times, strip, strict=True) if x["state"] == "succeeded"]
    last_success = max((j["finished_at"] for j in successes if j and j["finished_at"]), default=None)
    last_state = finals[-1]["state"] if finals else None
    return {
        "name": s.name, "cron": s.cron, "task_type": s.task_type, "enabled": k.enabled,
        "next_slot": s.next_slot(now) if k.enabled else None,
        "slots": strip, "last_state": last_state, "unhealthy": last_state in FAILED_STATES,
        "consecutive_failures": consecutive, "last_success_at": last_success,
    }


async def track_records(
    conn: Executor, settings: Settings, now: datetime, *, registry: Registry,
    handled: Sequence[str] | None = None, slots: int = SLOTS,
) -> list[dict[str, Any]]:
    """Every schedule the tasks declare (`registry`, overrides applied) or known to the database, with its last
    `slots` slots (oldest first). `handled`: the task types this process runs (a schedule of another type is not
    enabled here)."""
    with translate():
        rows = {r["name"]: dict(r) for r in await conn.fetch(_OP["schedules"])}
    known: list[_Known] = []
    for s in schedules_of(registry):
        enabled = s.enabled and settings.schedules_enabled and (handled is None or s.task_type in handled)
        row = rows.pop(s.name, {})
        if s.enabled or row:
            known.append(_Known(s if s.enabled else Schedule(s.name, row["cron"], s.task_type), enabled, row))
    for name, row in sorted(rows.items()):  # known to the database, no longer configured here
        if croniter.is_valid(row["cron"]):
            known.append(_Known(Schedule(name, row["cron"], row["task_type"]), False, row))
    if not known:
        return []
    keys = [k.schedule.dedupe_key(t) for k in known for t in _slots(k.schedule.cron, now, slots)]
    with translate():
        jobs = {r["dedupe_key"]: dict(r) for r in await conn.fetch(_Q["schedule_jobs"], keys)}
    return [_record(k, jobs, now, slots) for k in known]
