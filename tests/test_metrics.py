"""GET /metrics over a real HTTP connection: Prometheus text whose values move as jobs run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import wait_for
from tests.support.http import POLL_ONLY, auth, enqueue_due_soon, http_daemon, until_due
from worker import queue
from worker.metrics import Metrics
from worker.queue import Finished, Job


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def _scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return _samples(r.text)


def _v(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_as_jobs_run(database_url: str, conn: asyncpg.Connection) -> None:
    ok = await enqueue_due_soon(conn)
    await enqueue_due_soon(conn, {"fail": "flaky"}, max_attempts=3)
    await enqueue_due_soon(conn, {"fail": "bad", "permanent": True})
    async with http_daemon(database_url, **POLL_ONLY) as (_daemon, client):
        await until_due()
        before = await _scrape(client)
        assert _v(before, "worker_jobs", task_type="noop", status="pending") == 3
        assert _v(before, "worker_jobs", task_type="noop", status="succeeded") == 0
        assert _v(before, "worker_oldest_due_pending_age_seconds") > 0
        assert _v(before, "worker_jobs_claimed_total", task_type="noop") == 0
        assert _v(before, "worker_metrics_database_up") == 1

        r = await client.post("/api/jobs/run", headers=auth())
        assert r.json()["processed"] == 3
        after = await _scrape(client)
    assert _v(after, "worker_jobs_claimed_total", task_type="noop") == 3
    assert _v(after, "worker_jobs_succeeded_total", task_type="noop") == 1
    assert _v(after, "worker_jobs_retried_total", task_type="noop") == 1
    assert _v(after, "worker_jobs_failed_total", task_type="noop") == 1
    assert _v(after, "worker_job_duration_seconds_count", task_type="noop", outcome="succeeded") == 1
    assert _v(after, "worker_job_duration_seconds_count", task_type="noop", outcome="retry") == 1
    assert _v(after, "worker_job_duration_seconds_count", task_type="noop", outcome="failed") == 1
    finished_at = await conn.fetchval("SELECT extract(epoch FROM finished_at)::float8 FROM job_queue WHERE id = $1", ok)
    assert abs(_v(after, "worker_job_last_success_timestamp_seconds", task_type="noop") - finished_at) < 0.01
    assert _v(after, "worker_jobs", task_type="noop", status="succeeded") == 1
    assert _v(after, "worker_jobs", task_type="noop", status="failed") == 1
    assert _v(after, "worker_jobs", task_type="noop", status="pending") == 1  # the retry, waiting for its backoff


async def test_metrics_count_jobs_the_daemon_runs_and_listener_reconnects(
    database_url: str, conn: asyncpg.Connection
) -> None:
    async with http_daemon(database_url) as (daemon, client):
        assert daemon.listener is not None
        listener = daemon.listener

        async def listening() -> bool:
            return listener.state.connected

        await wait_for(listening)
        job = await queue.enqueue(conn, queue.NewJob("noop"))

        async def done() -> bool:
            return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job.id) == "succeeded"

        await wait_for(done)
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'worker-listener'"
        )

        async def reconnected() -> bool:
            return listener.state.reconnects >= 1 and listener.state.connected

        await wait_for(reconnected)

        async def scraped() -> bool:
            s = await _scrape(client)
            return _v(s, "worker_jobs_succeeded_total", task_type="noop") == 1

        await wait_for(scraped)  # the completion is flushed just after the row changes
        samples = await _scrape(client)
    assert _v(samples, "worker_jobs_claimed_total", task_type="noop") == 1
    assert _v(samples, "worker_listener_reconnects_total") == 1
    assert _v(samples, "worker_jobs", task_type="noop", status="succeeded") == 1
    assert _v(samples, "worker_oldest_due_pending_age_seconds") == 0


async def test_metrics_use_a_registry_of_their_own(database_url: str) -> None:
    from prometheus_client import REGISTRY

    async with http_daemon(database_url, **POLL_ONLY) as (_daemon, client):
        samples = await _scrape(client)
    assert _v(samples, "worker_jobs_claimed_total", task_type="noop") == 0
    assert REGISTRY.get_sample_value("worker_jobs_claimed_total", {"task_type": "noop"}) is None
    assert not any(name.startswith("python_gc") for name, _ in samples)


def test_batch_hooks_count_the_same_as_one_job_at_a_time() -> None:
    now = datetime.now(UTC)

    def job(task_type: str) -> Job:
        return Job(uuid.uuid4(), task_type, {}, 1, 3, 0, now)

    def fin(task_type: str, outcome: str, ms: int) -> Finished:
        status = {"succeeded": "succeeded", "retry": "pending", "failed": "failed"}[outcome]
        return Finished(
            uuid.uuid4(), task_type, 1, status, outcome, now, now + timedelta(seconds=ms), ms,  # type: ignore[arg-type]
        )

    jobs = [job("a"), job("b"), job("a")]
    done = [fin("a", "succeeded", 5), fin("a", "succeeded", 700), fin("b", "retry", 3), fin("b", "failed", 1)]
    one_by_one, batched = Metrics(["a", "b"]), Metrics(["a", "b"])
    for j in jobs:
        one_by_one.job_claimed(j)
    for f in done:
        one_by_one.job_finished(f)
    batched.jobs_claimed(jobs)
    batched.jobs_finished(done)
    samples = [
        {(s.name, tuple(sorted(s.labels.items()))): s.value for m in x.registry.collect() for s in m.samples
         if not s.name.endswith("_created")}
        for x in (one_by_one, batched)
    ]
    assert samples[0] == samples[1]
    assert batched.registry.get_sample_value("worker_jobs_claimed_total", {"task_type": "a"}) == 2
    assert batched.registry.get_sample_value("worker_jobs_succeeded_total", {"task_type": "a"}) == 2
    assert batched.registry.get_sample_value(
        "worker_job_last_success_timestamp_seconds", {"task_type": "a"}
    ) == (now + timedelta(seconds=700)).timestamp()


def test_a_batch_of_durations_counts_as_one_observation_each() -> None:
    """Metrics.jobs_finished observes a batch's durations per distinct value: every bucket counts each attempt
    as observing one at a time would, and the sum is the same (up to float rounding)."""
    now = datetime.now(UTC)
    durations = [0, 0, 0, 5, 5, 12, 12, 12, 12, 260, 4000, 0]

    def fin(ms: int) -> Finished:
        return Finished(uuid.uuid4(), "a", 1, "succeeded", "succeeded", now, now, ms)

    one_by_one, batched = Metrics(["a"]), Metrics(["a"])
    for ms in durations:
        one_by_one.job_finished(fin(ms))
    batched.jobs_finished([fin(ms) for ms in durations])

    def histogram(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in m.registry.collect() for s in f.samples
                if s.name.startswith("worker_job_duration_seconds") and not s.name.endswith("_created")}

    expected, got = histogram(one_by_one), histogram(batched)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value) if key[0].endswith("_sum") else value), key
    assert got[("worker_job_duration_seconds_count", (("outcome", "succeeded"), ("task_type", "a")))] == 12


def test_a_histogram_without_prometheus_internals_is_observed_per_attempt() -> None:
    from worker.metrics import _observe_ms

    seen: list[float] = []

    class Plain:
        def observe(self, value: float) -> None:
            seen.append(value)

    _observe_ms(Plain(), {0: 2, 7: 1})
    assert sorted(seen) == [0.0, 0.0, 0.007]
