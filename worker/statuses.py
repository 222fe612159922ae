"""The states of a job: the one list in the code. The database's CHECK on `job_queue.status`
(sql/migrations/001_job_queue.sql) allows exactly these (tests/test_job_statuses.py); the admin page hands them
to its JavaScript through the page (`data-statuses` on <body>), so no other list exists."""

from __future__ import annotations

__all__ = ["ACTIVE", "FINISHED", "STATUSES"]

STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
"""Every state a job can be in, in the order the admin page and the CLI show them."""
ACTIVE = ("pending", "running")
"""Not finished: what a dedupe key collides with and what cancel applies to."""
FINISHED = ("succeeded", "failed", "cancelled")
"""Final: a finished job changes only by an operator's retry or by archiving."""
