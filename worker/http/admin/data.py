"""What the admin page shows, read from the database: the overview, the filtered job list, one job.

Reads only; every action goes through worker/queue.py and worker/operations.py (see api.py). Input is
checked here before any query runs: a bad filter is an InvalidInput naming the problem.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from worker import limits, nodes, operations, queue
from worker.db import translate
from worker.errors import InvalidInput
from worker.http.inputs import query_int
from worker.jsonvalues import json_default
from worker.progress import attach_progress
from worker.queue import Executor
from worker.schedules import schedules_of
from worker.sql import queries

if TYPE_CHECKING:
    from worker.runtime.daemon import Daemon

__all__ = [
    "MAX_BULK", "MAX_PAGE", "JobFilter", "Overview", "dumps", "job_detail", "list_jobs",
    "parse_limit", "select_ids",
]

_Q = queries("admin")
_STATS = queries("stats")
_OP = queries("operator")
MAX_PAGE = 200
MAX_BULK = 1000
MAX_ERROR_TEXT = 200
MAX_LISTED_ERROR = 500  # characters of last_error a listed job shows (job_detail shows it whole)
COUNTS_TTL_S = 2.0
FILTER_KEYS = ("status", "task_type", "since", "until", "error")


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=json_default, ensure_ascii=False, separators=(",", ":")).encode()


# --- the job list -----------------------------------------------------------------------------------
def _text(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string")
    return value.strip() or None


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def encode_cursor(listed_ms: int, job_id: uuid.UUID) -> str:
    """The next page starts after this job: its place in the listing's order (created_at in milliseconds, id)."""
    return base64.urlsafe_b64encode(f"{listed_ms}|{job_id}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, uuid.UUID]:
    """A cursor of `encode_cursor`, or one from before migration 018, whose place was a created_at timestamp."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        place, _, job_id = raw.partition("|")
        if place.lstrip("-").isdigit() and place.isascii():
            listed_ms = int(place)
            if not -(2**63) <= listed_ms < 2**63:
                raise ValueError("out of range")
        else:
            created = datetime.fromisoformat(place)
            if created.tzinfo is None:
                raise ValueError("no zone")
            listed_ms = (created - _EPOCH) // _MS
        return listed_ms, uuid.UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this API returned") from None


@dataclass(frozen=True, slots=True)
class JobFilter:
    status: str | None = None
    task_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> JobFilter:
        status = _text(params, "status")
        if status is not None and status not in operations.STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(operations.STATUSES)}, not {status!r}")
        task_type = _text(params, "task_type")
        if task_type is not None:
            queue.validate_task_type(task_type)
        since_text, until_text = _text(params, "since"), _text(params, "until")
        for key, text in (("since", since_text), ("until", until_text)):
            if text is not None and not text.isascii():  # `\d` and float() also take '٣' and the like
                raise InvalidInput(f"{key} must be written in ASCII (e.g. 1h or 2024-05-01T00:00:00Z)")
        since = operations.parse_since(since_text) if since_text else None
        until = operations.parse_since(until_text) if until_text else None
        if since and until and since >= until:
            raise InvalidInput("since must be before until")
        error = _text(params, "error")
        if error is not None and len(error) > MAX_ERROR_TEXT:
            raise InvalidInput(f"error text must be at most {MAX_ERROR_TEXT} characters")
        return cls(status, task_type, since, until, error)

    def args(self) -> dict[str, Any]:
        """`operations.list_page`'s filter arguments."""
        pattern = _like_pattern(self.error) if self.error else None
        return {"status": self.status, "task_type": self.task_type, "since": self.since, "until": self.until,
                "error_pattern": pattern}

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in FILTER_KEYS}


def parse_limit(raw: str | None, default: int = 50, maximum: int = MAX_PAGE) -> int:
    return query_int(raw, name="limit", minimum=1, maximum=maximum, default=default)


async def list_jobs(
    conn: Executor, flt: JobFilter, *, limit: int, cursor: str | None = None
) -> dict[str, Any]:
    """One page, newest first, and the cursor of the next page (None on the last)."""
    after = decode_cursor(cursor) if cursor else None
    rows = await operations.list_page(conn, **flt.args(), after=after, limit=limit + 1)
    jobs = rows[:limit]
    next_cursor = encode_cursor(jobs[-1]["listed_ms"], jobs[-1]["id"]) if len(rows) > limit else None
    for job in jobs:
        del job["listed_ms"]
        if job["last_error"] is not None:
            job["last_error"] = job["last_error"][:MAX_LISTED_ERROR]
    await attach_progress(conn, jobs)
    return {"jobs": jobs, "next_cursor": next_cursor}


async def select_ids(conn: Executor, flt: JobFilter, *, limit: int = MAX_BULK) -> tuple[list[uuid.UUID], bool]:
    """The ids a bulk action on this filter acts on (newest first, at most `limit`), and whether more match."""
    rows = await operations.list_page(conn, **flt.args(), limit=limit + 1)
    return [r["id"] for r in rows[:limit]], len(rows) > limit


async def job_detail(conn: Executor, job_id: uuid.UUID) -> dict[str, Any]:
    job = await operations.show_job(conn, job_id)
    await attach_progress(conn, [job])
    return job


# --- the overview -----------------------------------------------------------------------------------
def _last_hour(rows: list[Any]) -> dict[str, Any]:
    by_type: dict[str, dict[str, int]] = {}
    for r in rows:
        by_type.setdefault(r["task_type"], {})[r["outcome"]] = int(r["n"])

    def summary(outcomes: Mapping[str, int]) -> dict[str, Any]:
        succeeded = outcomes.get("succeeded", 0)
        failures = sum(outcomes.get(k, 0) for k in ("retry", "failed", "abandoned"))
        attempts = succeeded + failures
        return {
            "attempts": attempts, "succeeded": succeeded, "failed_attempts": failures,
            "failed_for_good": outcomes.get("failed", 0),
            "failure_rate": round(failures / attempts, 4) if attempts else None,
            "per_minute": round(succeeded / 60, 2),
        }

    total: dict[str, int] = {}
    for outcomes in by_type.values():
        for k, n in outcomes.items():
            total[k] = total.get(k, 0) + n
    return {
        "window_s": 3600, **summary(total),
        "by_task_type": [{"task_type": t, **summary(o)} for t, o in sorted(by_type.items())],
    }


def _limit(slot: limits.SlotState | None) -> dict[str, Any]:
    """A task type's concurrency limit in force and its slots in use (None: unlimited)."""
    if slot is None:
        return {"concurrency_limit": None, "concurrency_key": None, "slots_in_use": None}
    return {"concurrency_limit": slot.max_running, "concurrency_key": slot.key_field, "slots_in_use": slot.running}


class Overview:
    """The overview, with the per-status counts (a scan of job_queue) shared for COUNTS_TTL_S seconds."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._counts: list[dict[str, Any]] = []
        self._counts_at = -1e9
        self._lock = anyio.Lock()

    async def _cached_counts(self, conn: Executor) -> list[dict[str, Any]]:
        async with self._lock:
            if time.monotonic() - self._counts_at >= COUNTS_TTL_S:
                with translate():
                    self._counts = [dict(r) for r in await conn.fetch(_STATS["jobs_by_status"])]
                self._counts_at = time.monotonic()
            return self._counts

    def _listener(self) -> dict[str, Any]:
        listener = self.daemon.listener
        if listener is None:
            return {"enabled": False, "healthy": True, "note": "LISTEN is off (poll-only mode)"}
        s = listener.state
        age = s.probe_age_s()
        max_age = self.daemon.settings.readyz_probe_max_age_s
        return {
            "enabled": True, "connected": s.connected, "healthy": s.connected and age is not None and age < max_age,
            "probe_age_s": None if age is None else round(age, 3),
            "probe_rtt_ms": None if s.last_probe_rtt_s is None else round(s.last_probe_rtt_s * 1000, 2),
            "reconnects": s.reconnects, "last_error": s.last_error,
        }

    def _schedules(self, rows: list[Any], now: datetime) -> list[dict[str, Any]]:
        settings = self.daemon.settings
        state = {r["name"]: dict(r) for r in rows}
        out = []
        for s in schedules_of(self.daemon.registry):
            active = s.enabled and settings.schedules_enabled and s.task_type in self.daemon.registry
            row = state.pop(s.name, {})
            out.append({
                "name": s.name, "cron": s.cron, "task_type": s.task_type, "enabled": active,
                "next_run": s.next_slot(now) if active else None,
                "last_slot": row.get("last_slot"), "last_job_id": row.get("last_job_id"),
                "last_enqueued_at": row.get("last_enqueued_at"), "last_job_status": row.get("last_job_status"),
            })
        for name, row in sorted(state.items()):  # known to the database, no longer configured here
            out.append({**row, "name": name, "enabled": False, "next_run": None})
        return out

    async def read(self, conn: Executor) -> dict[str, Any]:
        counts = await self._cached_counts(conn)
        with translate():
            oldest = await conn.fetchrow(_STATS["oldest_due_pending"])
            last_hour = await conn.fetch(_Q["last_hour"])
            schedule_rows = await conn.fetch(_OP["schedules"])
            now: datetime = await conn.fetchval(_STATS["db_now"])
        paused = await operations.paused(conn)
        in_force = {s.task_type: s for s in await limits.slots(conn)}  # concurrency limits (migration 010)
        unserved = {u["task_type"] for u in await nodes.unserved_task_types(conn, any_age=True)}
        totals = dict.fromkeys(operations.STATUSES, 0)
        by_type: dict[str, dict[str, int]] = {t: dict.fromkeys(operations.STATUSES, 0)
                                              for t in self.daemon.registry.names()}
        for r in counts:
            totals[r["status"]] = totals.get(r["status"], 0) + int(r["n"])
            by_type.setdefault(r["task_type"], dict.fromkeys(operations.STATUSES, 0))[r["status"]] = int(r["n"])
        return {
            "now": now.astimezone(UTC),
            "totals": totals,
            "by_task_type": [
                {"task_type": t, **c, **_limit(in_force.get(t)), "unserved": t in unserved}
                for t, c in sorted(by_type.items())
            ],
            "oldest_due_pending": {
                "age_s": None if oldest["age_s"] is None else round(max(float(oldest["age_s"]), 0.0), 3),
                "count": int(oldest["n"]),
            },
            "last_hour": _last_hour(list(last_hour)),
            "paused": paused,
            "globally_paused": any(p["task_type"] == operations.ALL_TASK_TYPES for p in paused),
            "task_types": self.daemon.registry.names(),
            "schedules": self._schedules(list(schedule_rows), now),
            "listener": self._listener(),
            "worker": {"worker_id": self.daemon.worker_id, "loops": dict(self.daemon.alive),
                       "concurrency": self.daemon.settings.concurrency},
        }
