"""Sentry alerts: the real envelopes, received on a local HTTP endpoint used as the DSN."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import asyncpg
import pytest
import sentry_sdk

from tests.support.daemon import make_settings, wait_for
from tests.support.http import SECRET, http_daemon
from tests.support.sentry_receiver import SentryReceiver
from worker import queue
from worker.alerts import Alerts, error_class
from worker.builtin.noop import NoopPayload, noop
from worker.tasks import EmptyPayload, Registry, Task, TaskContext


@pytest.fixture
def receiver() -> Iterator[SentryReceiver]:
    with SentryReceiver() as r:
        try:
            yield r
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.get_global_scope().set_client(None)


async def _fails_first_attempt(_payload: EmptyPayload, ctx: TaskContext) -> None:
    if ctx.job.attempt == 1:
        raise RuntimeError("transient hiccup")


async def _always_fails(_payload: EmptyPayload, _ctx: TaskContext) -> None:
    raise ConnectionResetError("upstream closed the connection")


def _registry() -> Registry:
    r = Registry()
    r.add(Task("noop", noop, NoopPayload))
    r.add(Task("flaky_once", _fails_first_attempt, EmptyPayload))
    r.add(Task("always_fails", _always_fails, EmptyPayload))
    return r


async def _wait_status(conn: asyncpg.Connection, job_id: Any, status: str) -> None:
    async def reached() -> bool:
        return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job_id) == status

    await wait_for(reached)


async def test_a_permanent_failure_sends_one_event_grouped_by_task_type_and_error_class(
    database_url: str, conn: asyncpg.Connection, receiver: SentryReceiver
) -> None:
    async with http_daemon(database_url, _registry(), sentry_dsn=receiver.dsn()) as (daemon, _client):
        job = await queue.enqueue(
            conn, queue.NewJob("noop", {"fail": f"bad data near {SECRET}", "permanent": True})
        )
        await _wait_status(conn, job.id, "failed")
        await anyio.to_thread.run_sync(daemon.resources["alerts"].flush)
        events = await anyio.to_thread.run_sync(receiver.wait_for_events, 1)
    assert len(events) == 1
    event = events[0]
    assert event["fingerprint"] == ["noop", "PermanentJobError"]
    assert event["tags"]["job_id"] == str(job.id)
    assert event["tags"]["attempt"] == "1"
    assert event["tags"]["task_type"] == "noop"
    assert event["tags"]["alert"] == "failed_permanently"
    assert event["level"] == "error"
    assert "job failed permanently: noop" in event["message"]
    assert "[REDACTED]" in event["message"]
    raw = json.dumps(event)
    assert SECRET not in raw
    assert "user" not in event
    assert not sentry_sdk.get_client().options.get("send_default_pii")
    assert "request" not in event
    assert event["server_name"] == "test-worker"
    path, headers, _ = receiver.requests[0]
    assert path == "/api/1/envelope/"
    assert "sentry_key=publickey" in headers["X-Sentry-Auth"]


async def test_a_transient_retry_sends_nothing(
    database_url: str, conn: asyncpg.Connection, receiver: SentryReceiver
) -> None:
    async with http_daemon(database_url, _registry(), sentry_dsn=receiver.dsn()) as (daemon, _client):
        flaky = await queue.enqueue(conn, queue.NewJob("flaky_once"))
        await _wait_status(conn, flaky.id, "succeeded")
        # Then one permanent failure: the only event that may arrive, proving the pipeline was live.
        dead = await queue.enqueue(conn, queue.NewJob("noop", {"fail": "bad", "permanent": True}))
        await _wait_status(conn, dead.id, "failed")
        await anyio.to_thread.run_sync(daemon.resources["alerts"].flush)
        events = await anyio.to_thread.run_sync(receiver.wait_for_events, 1)
    assert await conn.fetchval("SELECT count(*) FROM job_runs WHERE job_id = $1 AND outcome = 'retry'", flaky.id) == 1
    assert [e["tags"]["job_id"] for e in events] == [str(dead.id)]


async def test_a_task_type_failing_n_times_in_a_row_sends_an_event(
    database_url: str, conn: asyncpg.Connection, receiver: SentryReceiver
) -> None:
    async with http_daemon(
        database_url, _registry(), sentry_dsn=receiver.dsn(), sentry_consecutive_failures=3
    ) as (daemon, _client):
        job = await queue.enqueue(conn, queue.NewJob("always_fails", max_attempts=50))

        async def three_failures() -> bool:
            return await conn.fetchval("SELECT count(*) FROM job_runs WHERE job_id = $1", job.id) >= 3

        await wait_for(three_failures)
        await queue.cancel(conn, [job.id])
        await anyio.to_thread.run_sync(daemon.resources["alerts"].flush)
        events = await anyio.to_thread.run_sync(receiver.wait_for_events, 1)
    assert len(events) == 1
    event = events[0]
    assert event["fingerprint"] == ["always_fails", "ConnectionResetError"]
    assert event["tags"]["alert"] == "consecutive_failures"
    assert event["tags"]["attempt"] == "3"
    assert event["extra"]["consecutive_failures"] == 3
    assert "failed 3 times in a row" in event["message"]


def test_nothing_is_initialised_without_a_dsn(database_url: str) -> None:
    alerts = Alerts(make_settings(database_url))
    assert alerts.enabled is False
    assert not sentry_sdk.get_client().is_active()


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ("RuntimeError: boom", "RuntimeError"),
        ("PermanentJobError", "PermanentJobError"),
        ("timed out after 5s", "TimeoutError"),
        ("invalid payload for noop: sleep_s: too small", "InvalidPayload"),
        ("lease expired: worker w stopped heartbeating during attempt 2", "LeaseExpired"),
        ("something odd happened", "JobError"),
        (None, "JobError"),
    ],
)
def test_error_class_is_read_from_the_recorded_error(error: str | None, cls: str) -> None:
    assert error_class(error) == cls


def test_a_batch_of_ends_counts_streaks_as_one_at_a_time(database_url: str) -> None:
    """Alerts.jobs_finished (which skips the call for a success while no streak is open) leaves the same
    failure streaks and sends the same alerts as job_finished for each end in order."""
    import uuid
    from datetime import UTC, datetime

    from worker.queue import Finished

    now = datetime.now(UTC)
    outcomes = [("a", "succeeded"), ("a", "retry"), ("b", "retry"), ("a", "retry"), ("a", "succeeded"),
                ("b", "retry"), ("b", "failed"), ("c", "succeeded"), ("a", "retry")]
    ends = [
        Finished(uuid.uuid4(), t, 1, "succeeded" if o == "succeeded" else "pending" if o == "retry" else "failed",
                 o, now, now, 0, error=None if o == "succeeded" else "RuntimeError: x")  # type: ignore[arg-type]
        for t, o in outcomes
    ]
    sent: list[list[tuple[str, dict[str, Any]]]] = [[], []]
    batched, one_by_one = Alerts(make_settings(database_url)), Alerts(make_settings(database_url))
    for i, alerts in enumerate((batched, one_by_one)):
        alerts.threshold = 2
        alerts._send = lambda message, i=i, **tags: sent[i].append((message, tags))  # type: ignore[method-assign]
    batched.jobs_finished(ends)
    for f in ends:
        one_by_one.job_finished(f)
    assert batched.streaks == one_by_one.streaks == {"a": 1, "b": 3}
    assert sent[0] == sent[1] and sent[0]
