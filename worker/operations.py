"""Operator operations shared by the CLI and the admin page: list/show jobs, bulk retry, archive, retention
cleanup, pause/resume and the paused state.

Each function takes an asyncpg connection or pool; every check that can reject an input runs before anything
is written, so a rejected call changes nothing. All SQL lives in `sql/queries/operator.sql`.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from worker import queue
from worker.db import translate
from worker.errors import InvalidInput, JobNotFound, JobStateConflict
from worker.queue import Executor
from worker.sql import queries
from worker.statuses import FINISHED, STATUSES

__all__ = [
    "ALL_TASK_TYPES",
    "FINISHED",
    "STATUSES",
    "CleanupResult",
    "archive_filtered",
    "archive_ids",
    "cleanup",
    "duty_cycle_pause",
    "list_jobs",
    "list_page",
    "oldest_due_wait_s",
    "parse_duration",
    "parse_moment",
    "parse_since",
    "pause",
    "paused",
    "paused_task_types",
    "resume",
    "retry_filtered",
    "show_job",
]

_Q = queries("operator")
_QUEUE = queries("queue")
_STATS = queries("stats")

ALL_TASK_TYPES = "*"
MAX_LIST = 1000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '36h', '14d', '2w' -> timedelta (strictly positive)."""
    match = _DURATION.match(text or "")
    if not match:
        raise InvalidInput(f"not a duration: {text!r} (use a number and s, m, h, d or w, e.g. 14d)")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0 or seconds > 100 * 365 * 86400:
        raise InvalidInput(f"duration out of range: {text!r}")
    return timedelta(seconds=seconds)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A duration ago ('1h') or an ISO 8601 time with a zone ('2024-05-01T00:00:00+00:00')."""
    if _DURATION.match(text or ""):
        return (now or datetime.now(UTC)) - parse_duration(text)
    return parse_moment(text, example="1h or 2024-05-01T00:00:00Z")


def parse_moment(text: str, *, example: str, what: str = "") -> datetime:
    """An ISO 8601 time that carries its zone; `what` names the option in the error."""
    prefix = f"{what}: " if what else ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{prefix}not a time or duration: {text!r} (e.g. {example})") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{prefix}time needs a zone: {text!r} (e.g. 2024-05-01T00:00:00Z)")
    return moment


def _check_status(status: str | None, allowed: Sequence[str] = STATUSES) -> None:
    if status is not None and status not in allowed:
        raise InvalidInput(f"status must be one of {', '.join(allowed)}, not {status!r}")


def _check_pause_target(task_type: str) -> None:
    if task_type != ALL_TASK_TYPES:
        queue.validate_task_type(task_type)


# --- pause / resume -------------------------------------------------------------------------------
async def pause(
    conn: Executor, task_type: str = ALL_TASK_TYPES, *, by: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """Stop automatic processing of a task type ('*' = all). Idempotent."""
    _check_pause_target(task_type)
    if reason is not None and len(reason) > 1000:
        raise InvalidInput("reason must be at most 1000 characters")
    with translate():
        row = await conn.fetchrow(_Q["pause"], task_type, by, reason)
    return dict(row)


async def resume(conn: Executor, task_type: str = ALL_TASK_TYPES) -> bool:
    """Lift a pause and wake the daemons; False when it was not paused."""
    _check_pause_target(task_type)
    with translate():
        rows = await conn.fetch(_Q["resume"], task_type)
    return bool(rows)


async def paused(conn: Executor) -> list[dict[str, Any]]:
    """Every pause flag (task_type, paused_at, paused_by, reason); '*' is the global pause."""
    with translate():
        rows = await conn.fetch(_Q["paused"])
    return [dict(r) for r in rows]


async def paused_task_types(conn: Executor) -> list[str]:
    """The paused task types ('*' = all), for /metrics and doctor."""
    return [r["task_type"] for r in await paused(conn)]


# --- list / show ----------------------------------------------------------------------------------
async def list_page(
    conn: Executor,
    *,
    status: str | None = None,
    task_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    error_pattern: str | None = None,
    after: tuple[int, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """One page of jobs, newest first by (created_at in milliseconds, id), each with its `listed_ms` (pass the
    last row's `(listed_ms, id)` as `after` for the next page); `error_pattern` is an ILIKE pattern on
    last_error. The arguments are the caller's to check."""
    after_ms, after_id = after if after is not None else (None, None)
    with translate():
        rows = await conn.fetch(
            _Q["list_jobs"], status, task_type, since, until, error_pattern, after_ms, after_id, limit
        )
    return [dict(r) for r in rows]


async def list_jobs(
    conn: Executor,
    *,
    status: str | None = None,
    task_type: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    after: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    """Newest first; pass the last row's id as `after` for the next page."""
    _check_status(status)
    if task_type is not None:
        queue.validate_task_type(task_type)
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST}")
    key = None
    if after is not None:
        with translate():
            after_ms = await conn.fetchval(_Q["listed_ms"], after)
        if after_ms is None:
            raise JobNotFound(f"no job {after}")
        key = (after_ms, after)
    rows = await list_page(conn, status=status, task_type=task_type, since=since, after=key, limit=limit)
    for row in rows:
        del row["listed_ms"]
    return rows


async def show_job(conn: Executor, job_id: uuid.UUID) -> dict[str, Any]:
    """The job row and its whole attempt history under 'runs'."""
    job = await queue.get_job(conn, job_id)
    job["runs"] = await queue.job_runs(conn, job_id)
    return job


# --- bulk retry -----------------------------------------------------------------------------------
async def retry_filtered(
    conn: Executor,
    *,
    status: str,
    task_type: str | None = None,
    since: datetime | None = None,
    limit: int = 10000,
) -> list[uuid.UUID]:
    """Replay failed (or cancelled) jobs matching the filter: pending now, at most `limit`."""
    _check_status(status, ("failed", "cancelled"))
    if task_type is not None:
        queue.validate_task_type(task_type)
    if not 1 <= limit <= 1_000_000:
        raise InvalidInput("limit must be between 1 and 1000000")
    with translate():
        rows = await conn.fetch(_Q["retry_filtered"], status, task_type, since, limit)
    return [r["id"] for r in rows]


# --- archive --------------------------------------------------------------------------------------
async def archive_ids(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> tuple[int, int]:
    """Move these finished jobs and their history to the archive. All or nothing: an unknown or unfinished
    job raises before anything moves. Returns (jobs, runs) moved."""
    unique = list(dict.fromkeys(ids))
    if not unique:
        return (0, 0)
    with translate():
        statuses = {r["id"]: r["status"] for r in await conn.fetch(_QUEUE["job_statuses"], unique)}
    for job_id in unique:
        if job_id not in statuses:
            raise JobNotFound(f"no job {job_id}")
        if statuses[job_id] not in FINISHED:
            raise JobStateConflict(f"cannot archive job {job_id}: it is {statuses[job_id]}")
    with translate():
        async with conn.transaction():
            rows = await conn.fetch(_Q["archive_ids"], unique)
            if len(rows) != len(unique):  # one changed state meanwhile (retried): move nothing
                raise JobStateConflict("a job changed state while being archived; nothing was archived")
    return (len(rows), int(rows[0]["runs"]))


async def archive_filtered(
    conn: asyncpg.Connection,
    *,
    older_than: timedelta,
    status: str | None = None,
    task_type: str | None = None,
    limit: int = 100000,
    batch_size: int = 1000,
) -> tuple[int, int]:
    """Archive finished jobs that finished more than `older_than` ago, in bounded batches."""
    _check_status(status, FINISHED)
    if task_type is not None:
        queue.validate_task_type(task_type)
    before = datetime.now(UTC) - older_than
    jobs = runs = 0
    while jobs < limit:
        with translate():
            rows = await conn.fetch(
                _Q["archive_candidates"], status, task_type, before, min(batch_size, limit - jobs)
            )
            ids = [r["id"] for r in rows]
            if not ids:
                break
            async with conn.transaction():
                moved = await conn.fetch(_Q["archive_ids"], ids)
        jobs += len(moved)
        runs += int(moved[0]["runs"]) if moved else 0
        if len(ids) < batch_size:
            break
    return (jobs, runs)


# --- retention cleanup ----------------------------------------------------------------------------
_FIRST_KEY = uuid.UUID(int=0)  # below every id


@dataclass(frozen=True, slots=True)
class CleanupResult:
    jobs: int
    succeeded: int
    runs: int
    batches: int
    finished: bool = True
    """False: the run stopped at its deadline or after `max_busy_s`, expired jobs possibly left."""
    busy_s: float = field(default=0.0, compare=False)
    """Seconds spent in the batches' statements."""
    paused_s: float = field(default=0.0, compare=False)
    """Seconds paused between batches (the duty cycle)."""
    next_key: uuid.UUID | None = field(default=None, compare=False)
    """Where a run that did not finish would continue (`start_key`)."""

    def as_dict(self) -> dict[str, int]:
        return {"jobs": self.jobs, "succeeded": self.succeeded, "runs": self.runs, "batches": self.batches}


def duty_cycle_pause(busy_s: float, duty_cycle_percent: float) -> float:
    """The pause after a batch that took `busy_s` so that batches take at most `duty_cycle_percent` of the
    time: busy / (busy + pause) = percent / 100 (tests/unit/test_cleanup_duty_cycle.py)."""
    if not 0 < duty_cycle_percent <= 100:
        raise InvalidInput(f"cleanup duty cycle must be in (0, 100] percent, not {duty_cycle_percent!r}")
    return max(0.0, busy_s) * (100.0 - duty_cycle_percent) / duty_cycle_percent


async def oldest_due_wait_s(conn: Executor) -> float | None:
    """How long the oldest due pending job has waited (None: none is due); a probe per priority."""
    with translate():
        wait = await conn.fetchval(_STATS["oldest_due_wait"])
    return None if wait is None else float(wait)


async def cleanup(
    conn: Executor,
    *,
    succeeded_older_than: timedelta,
    failed_older_than: timedelta,
    batch_size: int = 1000,
    max_batches: int | None = None,
    duty_cycle_percent: float = 100.0,
    deadline: float | None = None,
    max_busy_s: float | None = None,
    start_key: uuid.UUID | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> CleanupResult:
    """Delete expired finished jobs and their ledger rows in id order (the oldest first of the ids that carry
    their time), one bounded batch (one short transaction) at a time, until none is left or `max_batches` were done.

    Duty cycle: after a batch that took t seconds it pauses t * (100 - p) / p, so the run's statements hold a
    database connection at most p % of the time and the queue it protects keeps the rest (p = 100: no pause).
    `deadline` (on `clock`): no batch starts, and no pause runs, past it; the result then says
    `finished=False` (the next run starts from the lowest id again). `max_busy_s`: stop (`finished=False`)
    once the batches took that long, at least one batch done; `next_key` then says where to continue
    (`start_key`: continue a run after that id instead of at the lowest one)."""
    if batch_size < 1:
        raise InvalidInput("batch size must be at least 1")
    duty_cycle_pause(0.0, duty_cycle_percent)  # rejects a bad percentage before anything is deleted
    jobs = succeeded = runs = batches = 0
    busy = paused = 0.0
    after_id = start_key or _FIRST_KEY
    while max_batches is None or batches < max_batches:
        if deadline is not None and clock() >= deadline:
            return CleanupResult(jobs, succeeded, runs, batches, False, busy, paused, after_id)
        began = clock()
        with translate():
            row = await conn.fetchrow(
                _Q["cleanup_batch"], succeeded_older_than.total_seconds(), failed_older_than.total_seconds(),
                batch_size, after_id,
            )
        took = clock() - began
        busy += took
        batches += 1
        jobs += int(row["jobs"])
        succeeded += int(row["succeeded"])
        runs += int(row["runs"])
        if int(row["jobs"]) < batch_size:
            break
        after_id = row["last_id"]
        if max_busy_s is not None and busy >= max_busy_s:
            return CleanupResult(jobs, succeeded, runs, batches, False, busy, paused, after_id)
        pause = duty_cycle_pause(took, duty_cycle_percent)
        if pause > 0:
            if deadline is not None and clock() + pause >= deadline:
                return CleanupResult(jobs, succeeded, runs, batches, False, busy, paused, after_id)
            await sleep(pause)
            paused += pause
    return CleanupResult(jobs, succeeded, runs, batches, True, busy, paused)
