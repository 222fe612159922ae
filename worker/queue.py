"""Queue operations: enqueue, claim, finish, heartbeat, recover, release, cancel, retry.

Every function takes an asyncpg connection (or pool) so callers choose the transaction: `enqueue` inside the
caller's own transaction commits or rolls back with it. All SQL lives in `sql/queries/queue.sql`.
This module is the core: it imports nothing from the HTTP app, the CLI or the daemon.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from worker.db import translate
from worker.errors import InvalidInput, JobNotFound, JobStateConflict
from worker.jobs import (
    MAX_PAYLOAD_BYTES,
    Enqueued,
    Finished,
    Job,
    NewJob,
    _claimed_jobs,
    validate_task_type,
)
from worker.sql import queries

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Enqueued",
    "Finished",
    "Job",
    "NewJob",
    "cancel",
    "claim",
    "claim_ids",
    "enqueue",
    "enqueue_many",
    "ensure_statistics",
    "finish",
    "get_job",
    "heartbeat",
    "job_runs",
    "parse_job_id",
    "queue_depth",
    "recover_and_claim",
    "recover_expired",
    "release",
    "retry_now",
    "validate_task_type",
]

_Q = queries("queue")
_STATS = queries("stats")

class Executor(Protocol):
    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...
    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any: ...


@contextlib.contextmanager
def _refused_by_database() -> Iterator[None]:
    """A job the table's constraints refuse (checks that Python cannot mirror exactly: jsonb's own text form of
    numbers for the size cap, a NUL character jsonb cannot store) is bad input, not a server error."""
    try:
        yield
    except asyncpg.CheckViolationError as exc:
        raise InvalidInput(f"job refused by the database: {exc.constraint_name or 'a check constraint'}") from None
    except (asyncpg.UntranslatableCharacterError, asyncpg.CharacterNotInRepertoireError) as exc:
        raise InvalidInput(f"job refused by the database: {exc.message}") from None


def parse_job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"not a job id (a UUID): {value!r}") from None


async def enqueue(conn: Executor, job: NewJob) -> Enqueued:
    job = job.checked()
    with translate(), _refused_by_database():
        row = await conn.fetchrow(
            _Q["enqueue"], job.task_type, job.payload, job.run_at, job.priority, job.max_attempts,
            job.dedupe_key,
        )
    if row is None:  # the conflicting job finished between the insert and the lookup: try once more
        with translate():
            row = await conn.fetchrow(
                _Q["enqueue"], job.task_type, job.payload, job.run_at, job.priority, job.max_attempts,
                job.dedupe_key,
            )
    if row is None:
        raise JobStateConflict(f"dedupe key {job.dedupe_key!r} is contended; try again")
    return Enqueued(id=row["id"], created=row["created"])


async def enqueue_many(conn: Executor, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
    """Insert a batch in one statement; returns the ids created, in the batch's order (jobs with a taken dedupe
    key are skipped). The ids rise in the batch's order, so a batch at one priority and run_at is claimed in
    that order (migration 020; tests/test_ids.py). Each payload is encoded once (its checked JSON text goes to
    the database as is), each distinct task type validated once; a column the whole batch shares goes as one
    value, not an array, and a batch without dedupe keys as a plain insert (queue.sql, enqueue_many;
    tests/test_queue.py)."""
    if not jobs:
        return []
    task_types: set[str] = set()
    payloads = []
    for j in jobs:
        if j.task_type not in task_types:
            validate_task_type(j.task_type)
            task_types.add(j.task_type)
        payloads.append(j.checked_payload_text())
    run_at = [j.run_at for j in jobs]
    priorities = {j.priority for j in jobs}
    attempts = {j.max_attempts for j in jobs}
    columns = [
        None if len(task_types) == 1 else [j.task_type for j in jobs],
        payloads,
        run_at if any(run_at) else None,  # a column of nulls goes as no array (unnest pads it with nulls)
        None if len(priorities) == 1 else [j.priority for j in jobs],
        None if len(attempts) == 1 else [j.max_attempts for j in jobs],
    ]
    shared = [
        next(iter(task_types)) if len(task_types) == 1 else None,
        next(iter(priorities)) if len(priorities) == 1 else None,
        next(iter(attempts)) if len(attempts) == 1 else None,
    ]
    dedupe = [j.dedupe_key for j in jobs]
    with translate(), _refused_by_database():
        if any(k is not None for k in dedupe):
            ids = await conn.fetchval(_Q["enqueue_many"], *columns, dedupe, *shared)
        else:
            ids = await conn.fetchval(_Q["enqueue_many_no_dedupe"], *columns, *shared)
    return list(ids or ())


async def claim(
    conn: Executor, *, worker_id: str, task_types: Sequence[str], limit: int, lease_s: float,
    walk_from: uuid.UUID | None = None,
) -> list[Job]:
    """Claim up to `limit` due jobs in claim order. `walk_from`: a job this worker's last claim took, the first of
    its lowest priority, to walk the claim index from (worker/runtime/walk.py); None walks it whole."""
    if limit <= 0 or not task_types:
        return []
    with translate():
        rows = await conn.fetch(_Q["claim"], list(task_types), limit, worker_id, float(lease_s), walk_from)
    return _claimed_jobs(rows)


async def recover_and_claim(
    conn: Executor, *, worker_id: str, task_types: Sequence[str], limit: int, lease_s: float,
    recover_limit: int = 500, walk_from: uuid.UUID | None = None,
) -> tuple[list[Job], list[dict[str, Any]]]:
    """One statement: recover expired leases and claim up to `limit` jobs (`walk_from` as in claim). Returns
    (claimed, recovered)."""
    with translate():
        rows = await conn.fetch(
            _Q["recover_and_claim"], list(task_types), max(limit, 0), worker_id, float(lease_s), walk_from,
            recover_limit,
        )
    claimed = _claimed_jobs(r for r in rows if r["kind"] == "claimed")
    recovered = [
        {k: r[k] for k in ("id", "task_type", "status", "attempts", "locked_by")}
        for r in rows
        if r["kind"] == "recovered"
    ]
    return claimed, recovered


async def claim_ids(
    conn: Executor, ids: Sequence[uuid.UUID], *, worker_id: str, lease_s: float
) -> list[Job]:
    with translate():
        rows = await conn.fetch(_Q["claim_ids"], list(ids), worker_id, float(lease_s))
    return _claimed_jobs(rows)


async def finish(conn: Executor, worker_id: str, done: Sequence[Finished]) -> set[uuid.UUID]:
    """Record finished attempts in one statement; returns the ids acknowledged (still leased by us). The
    statement returns only the ids it refused (usually none), not one row per job."""
    if not done:
        return set()
    with translate():
        rows = await conn.fetch(
            _Q["finish"],
            worker_id,
            [
                (d.job_id, d.attempt, d.status, d.outcome, None if d.result is None else json.dumps(d.result),
                 d.error, d.retry_at, d.finished_at.timestamp(), d.duration_ms)
                for d in done
            ],
        )
    refused = {r["id"] for r in rows}
    return {d.job_id for d in done if d.job_id not in refused}


async def heartbeat(
    conn: Executor, worker_id: str, ids: Iterable[uuid.UUID], lease_s: float
) -> set[uuid.UUID]:
    """Extend our leases; returns the ids we still hold."""
    id_list = list(ids)
    if not id_list:
        return set()
    with translate():
        rows = await conn.fetch(_Q["heartbeat"], id_list, worker_id, float(lease_s))
    return {r["id"] for r in rows}


async def recover_expired(conn: Executor, limit: int = 500) -> list[dict[str, Any]]:
    """Jobs whose lease expired: back to pending (or failed when out of attempts), each abandoned attempt in
    the ledger. Returns what moved. (The poll's recover-and-claim statement, claiming nothing.)"""
    _, recovered = await recover_and_claim(
        conn, worker_id="", task_types=[], limit=0, lease_s=1.0, recover_limit=limit
    )
    return recovered


async def release(
    conn: Executor,
    worker_id: str,
    jobs: Sequence[tuple[uuid.UUID, int, datetime]],
    reason: str = "interrupted by worker shutdown",
) -> set[uuid.UUID]:
    """Hand (id, attempt, started_at) jobs back to pending now; the attempt is not counted."""
    if not jobs:
        return set()
    with translate():
        rows = await conn.fetch(
            _Q["release"], worker_id, [j[0] for j in jobs], [j[1] for j in jobs], [j[2] for j in jobs], reason
        )
    return {r["job_id"] for r in rows}


async def _existing(conn: Executor, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    with translate():
        rows = await conn.fetch(_Q["job_statuses"], list(ids))
    return {r["id"]: r["status"] for r in rows}


async def cancel(conn: Executor, ids: Sequence[uuid.UUID], reason: str | None = None) -> list[uuid.UUID]:
    """Cancel pending or running jobs. Raises (changing nothing) if any id is unknown or already finished."""
    statuses = await _existing(conn, ids)
    _require(ids, statuses, allowed={"pending", "running"}, action="cancel")
    with translate():
        rows = await conn.fetch(_Q["cancel"], list(ids), reason)
    return [r["id"] for r in rows]


async def retry_now(conn: Executor, ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Failed/cancelled jobs back to pending now (with an attempt left); waiting pending jobs run now."""
    statuses = await _existing(conn, ids)
    _require(ids, statuses, allowed={"failed", "cancelled", "pending"}, action="retry")
    try:
        with translate():
            rows = await conn.fetch(_Q["retry_now"], list(ids))
    except asyncpg.UniqueViolationError as exc:
        raise JobStateConflict("another pending or running job holds the same dedupe key") from exc
    return [r["id"] for r in rows]


def _require(
    ids: Sequence[uuid.UUID], statuses: Mapping[uuid.UUID, str], *, allowed: set[str], action: str
) -> None:
    for job_id in ids:
        status = statuses.get(job_id)
        if status is None:
            raise JobNotFound(f"no job {job_id}")
        if status not in allowed:
            raise JobStateConflict(f"cannot {action} job {job_id}: it is {status}")


async def get_job(conn: Executor, job_id: uuid.UUID) -> dict[str, Any]:
    with translate():
        row = await conn.fetchrow(_Q["get_job"], job_id)
    if row is None:
        raise JobNotFound(f"no job {job_id}")
    return dict(row)


async def job_runs(conn: Executor, job_id: uuid.UUID) -> list[dict[str, Any]]:
    with translate():
        rows = await conn.fetch(_Q["job_runs"], job_id)
    return [dict(r) for r in rows]


async def ensure_statistics(conn: Executor) -> bool:
    """ANALYZE job_queue once if it was never analyzed (a fresh database); True when it ran."""
    with translate():
        if not await conn.fetchval(_Q["never_analyzed"]):
            return False
        await conn.fetchval(_Q["analyze"])
    return True


async def queue_depth(conn: Executor) -> int:
    with translate():
        return int(await conn.fetchval(_STATS["oldest_due_pending"], column=1))  # one count for every reader
