"""worker: a PostgreSQL job-queue daemon (LISTEN/NOTIFY wake-ups, SKIP LOCKED claims, leases, retries)."""

from worker.errors import PermanentJobError, WorkerError
from worker.queue import Enqueued, Job, NewJob, enqueue, enqueue_many
from worker.settings import Settings, load_settings
from worker.tasks import Registry, Task, TaskContext

__all__ = [
    "Enqueued",
    "Job",
    "NewJob",
    "PermanentJobError",
    "Registry",
    "Settings",
    "Task",
    "TaskContext",
    "WorkerError",
    "enqueue",
    "enqueue_many",
    "load_settings",
]

__version__ = "0.1.0"
