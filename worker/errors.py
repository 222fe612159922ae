"""The exception root of the package and its children.

Driver errors (asyncpg, OSError, httpx) are translated at the boundary with ``raise ... from exc`` so callers
only ever need to catch :class:`WorkerError` or one of its children.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatabaseConflict",
    "DatabaseUnavailable",
    "InvalidInput",
    "InvalidPayload",
    "JobNotFound",
    "JobStateConflict",
    "MigrationError",
    "PermanentJobError",
    "UnknownTaskType",
    "WorkerError",
]


class WorkerError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(WorkerError):
    """A setting is missing or invalid (exit code 2 before anything connects)."""


class DatabaseUnavailable(WorkerError):
    """PostgreSQL could not be reached or the connection broke; the operation may be retried."""


class DatabaseConflict(DatabaseUnavailable):
    """A deadlock or serialization failure: the statement was rolled back and changed nothing; retry it. A
    DatabaseUnavailable so that every loop of the daemon retries it (logged) instead of ending the process."""


class MigrationError(WorkerError):
    """The schema could not be migrated, or is not at the version this code needs."""


class InvalidInput(WorkerError):
    """A caller handed us something malformed (bad id, bad JSON, out-of-range value)."""


class UnknownTaskType(InvalidInput):
    """No handler is registered for this task type."""


class InvalidPayload(InvalidInput):
    """The payload does not validate against the task type's model."""


class JobNotFound(InvalidInput):
    """No job with that id."""


class JobStateConflict(InvalidInput):
    """The job's state forbids the requested action (e.g. cancelling a succeeded job)."""


class PermanentJobError(WorkerError):
    """Raised by a handler: fail the job now, without retrying."""
