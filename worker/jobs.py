"""The job records the queue takes and gives: a job to enqueue (NewJob, checked here), a claimed job (Job), the
end of an attempt (Finished), and an enqueue's answer (Enqueued). Imports nothing from the queue's SQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from worker.errors import InvalidInput
from worker.jsonvalues import dumps_bounded

__all__ = [
    "MAX_DEDUPE_KEY",
    "MAX_PAYLOAD_BYTES",
    "TASK_TYPE_RE",
    "Enqueued",
    "Finished",
    "Job",
    "NewJob",
    "Outcome",
    "Status",
    "validate_task_type",
]

MAX_PAYLOAD_BYTES = 65536
MAX_DEDUPE_KEY = 255
TASK_TYPE_RE = re.compile(r"^(?:[a-z]|[a-z][a-z0-9_.:-]{0,62}[a-z0-9])$")


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job, as its handler sees it."""

    id: uuid.UUID
    task_type: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    priority: int
    started_at: datetime


class _ClaimedJob:
    """Job's slots without its frozen __setattr__: a claimed row's Job is built as one of these, with plain
    attribute stores, then made a Job (`__class__`, the same slots layout). A frozen dataclass's __init__ makes
    a call per field, and the claim builds a Job per row (tests/unit/test_claimed_jobs.py:
    test_claimed_jobs_are_plain_frozen_jobs)."""

    __slots__ = ("attempt", "id", "max_attempts", "payload", "priority", "started_at", "task_type")


def _claimed_jobs(rows: Iterable[Mapping[str, Any]]) -> list[Job]:
    """Jobs from claimed rows. Their start comes as epoch seconds (`started_epoch`, the same for every row of
    one claim): one datetime per distinct value, not a timestamp decoded per row."""
    starts: dict[float, datetime] = {}
    jobs: list[Job] = []
    for row in rows:
        epoch = row["started_epoch"]
        started = starts.get(epoch)
        if started is None:
            started = starts[epoch] = datetime.fromtimestamp(epoch, UTC)
        job: Any = _ClaimedJob()
        job.id, job.task_type, job.payload = row["id"], row["task_type"], row["payload"]
        job.attempt, job.max_attempts, job.priority = row["attempts"], row["max_attempts"], row["priority"]
        job.started_at = started
        job.__class__ = Job
        jobs.append(job)
    return jobs


assert sorted(_ClaimedJob.__slots__) == sorted(Job.__slots__)  # the layout __class__ needs (slots are laid out sorted)


_NO_PAYLOAD: Any = object()  # NewJob's payload default: a new {} for each job


class _NewJobFields:
    """NewJob's slots without its frozen __setattr__: NewJob.__init__ stores the fields through this class (plain
    attribute stores) and makes the object a NewJob again, as _claimed_jobs builds a Job. A frozen dataclass's
    __init__ makes a call per field, and a batch enqueue builds a NewJob per job
    (tests/unit/test_claimed_jobs.py: test_a_new_job_is_a_plain_frozen_new_job)."""

    __slots__ = ("dedupe_key", "max_attempts", "payload", "priority", "run_at", "task_type")


@dataclass(frozen=True, slots=True, init=False)
class NewJob:
    task_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    run_at: datetime | None = None
    priority: int = 0
    max_attempts: int = 5
    dedupe_key: str | None = None

    def __init__(
        self, task_type: str, payload: dict[str, Any] = _NO_PAYLOAD, run_at: datetime | None = None,
        priority: int = 0, max_attempts: int = 5, dedupe_key: str | None = None,
    ) -> None:
        object.__setattr__(self, "__class__", _NewJobFields)
        job: Any = self
        job.task_type = task_type
        job.payload = {} if payload is _NO_PAYLOAD else payload
        job.run_at, job.priority, job.max_attempts, job.dedupe_key = run_at, priority, max_attempts, dedupe_key
        object.__setattr__(self, "__class__", NewJob)

    def checked(self) -> NewJob:
        validate_task_type(self.task_type)
        self.checked_payload_text()
        return self

    def checked_payload_text(self) -> str:
        """Everything but the task type checked; the payload's JSON text (what the database stores)."""
        text = _payload_text(self.payload)
        if not -1000 <= self.priority <= 1000:
            raise InvalidInput("priority must be between -1000 and 1000")
        if not 1 <= self.max_attempts <= 1000:
            raise InvalidInput("max_attempts must be between 1 and 1000")
        if self.dedupe_key is not None and not 1 <= len(self.dedupe_key) <= MAX_DEDUPE_KEY:
            raise InvalidInput(f"dedupe_key must be 1 to {MAX_DEDUPE_KEY} characters")
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise InvalidInput("run_at must carry a time zone")
        return text


@dataclass(frozen=True, slots=True)
class Enqueued:
    id: uuid.UUID
    created: bool
    """False when a pending or running job with the same dedupe key already existed (its id is returned)."""


Status = Literal["succeeded", "pending", "failed"]
Outcome = Literal["succeeded", "retry", "failed"]


@dataclass(slots=True)
class Finished:
    """The end of one attempt, as `finish` records it. Not frozen: one is built for every attempt on the
    daemon's hot path, and a frozen dataclass's __init__ makes a call per field (docs/performance.md)."""

    job_id: uuid.UUID
    task_type: str
    attempt: int
    status: Status
    outcome: Outcome
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    result: Any = None
    error: str | None = None
    retry_at: datetime | None = None


def validate_task_type(task_type: str) -> None:
    if not isinstance(task_type, str) or not TASK_TYPE_RE.match(task_type):
        raise InvalidInput(
            "task type must be 1-64 characters: lowercase letters, digits and _ . : - , "
            "starting with a letter and not ending with punctuation"
        )


def _payload_text(payload: Any) -> str:
    if not isinstance(payload, dict):
        raise InvalidInput("payload must be a JSON object")
    if not payload:
        return "{}"
    text = dumps_bounded(payload, what="payload")
    size = len(text.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    return text
