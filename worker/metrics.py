"""Prometheus metrics of one worker process, in a registry of its own (never the global one).

Event counters move through the `Hooks` interface as the daemon (or `/api/jobs/run`) claims and finishes jobs.
The queue's shape (jobs by status and task type, age of the oldest due pending job) is read from the database
when `/metrics` is scraped: `await metrics.refresh(pool)` then `metrics.render()`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker import history, limits, nodes
from worker.db import translate
from worker.hooks import Hooks
from worker.limits import SlotState
from worker.queue import Executor, Finished, Job
from worker.settings import Settings
from worker.sql import queries
from worker.statuses import STATUSES
from worker.tasks import Registry

__all__ = ["CONTENT_TYPE", "STATUSES", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

_Q = queries("stats")
_PROGRESS = queries("progress")
log = structlog.get_logger("worker.metrics")


class _QueueCollector(Collector):
    """Yields the last database snapshot as gauges (labels of vanished task types disappear with it)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        jobs = GaugeMetricFamily(
            "worker_jobs", "Jobs in the queue by task type and status (read at scrape time).",
            labels=["task_type", "status"],
        )
        for (task_type, status), n in sorted(m.jobs_snapshot.items()):
            jobs.add_metric([task_type, status], n)
        yield jobs
        due = GaugeMetricFamily(
            "worker_jobs_due_pending", "Due pending jobs by task type: the queue's depth (KEDA scales on it).",
            labels=["task_type"],
        )
        for task_type, n in sorted(m.due_snapshot.items()):
            due.add_metric([task_type], n)
        yield due
        yield GaugeMetricFamily(
            "worker_oldest_due_pending_age_seconds",
            "Seconds since the oldest due pending job became due (0 when none is waiting).",
            value=m.oldest_due_age_s,
        )
        done = GaugeMetricFamily(
            "worker_job_progress_done",
            "Running jobs' reported progress (ctx.progress): units done, summed per task type (read at scrape time).",
            labels=["task_type"],
        )
        total = GaugeMetricFamily(
            "worker_job_progress_total",
            "Running jobs' reported progress: units in all, summed per task type (jobs that gave a total).",
            labels=["task_type"],
        )
        for task_type, (d, t) in sorted(m.progress_snapshot.items()):
            done.add_metric([task_type], d)
            total.add_metric([task_type], t)
        yield done
        yield total
        yield from m.fleet_metrics()
        yield from _slot_gauges(m.slots_snapshot)
        yield GaugeMetricFamily(
            "worker_metrics_database_up", "1 when the last scrape could read the queue from the database.",
            value=1.0 if m.database_up else 0.0,
        )


def _slot_gauges(slots: Sequence[SlotState]) -> Iterator[Metric]:
    """The concurrency limits in force (job_queue_limits) and their slots, as read at scrape time."""
    families = {
        "limit": GaugeMetricFamily("worker_concurrency_limit", "A task type's global concurrency limit "
                                   "(per key value when it has a key).", labels=["task_type"]),
        "running": GaugeMetricFamily("worker_concurrency_slots_in_use", "Jobs of a limited task type running "
                                     "across every daemon.", labels=["task_type"]),
        "waiting": GaugeMetricFamily("worker_concurrency_waiting_jobs", "Due pending jobs of a limited task "
                                     "type (waiting for a slot or a claim).", labels=["task_type"]),
        "oldest": GaugeMetricFamily("worker_concurrency_slot_wait_seconds", "How long the oldest due pending "
                                    "job of a limited task type has waited for a slot.", labels=["task_type"]),
    }
    for s in slots:
        families["limit"].add_metric([s.task_type], s.max_running)
        families["running"].add_metric([s.task_type], s.running)
        families["waiting"].add_metric([s.task_type], s.waiting)
        families["oldest"].add_metric([s.task_type], s.oldest_wait_s)
    yield from families.values()


@dataclass(frozen=True, slots=True)
class _TaskMetrics:
    claimed: Any
    succeeded: Any
    retried: Any
    failed: Any
    last_success: Any
    duration_succeeded: Any


def _observe_ms(histogram: Any, durations_ms: Mapping[int, int]) -> None:
    """`histogram.observe(ms / 1000)` once for each of `durations_ms`'s counts (duration in whole ms -> how many
    attempts took it): one increment per distinct duration, not per attempt (a batch of short jobs shares a few
    values). prometheus_client's Histogram keeps a sum and one counter per bucket (`_sum`, `_buckets`,
    `_upper_bounds`); without them, one observe per attempt (tests/test_metrics.py:
    test_a_batch_of_durations_counts_as_one_observation_each)."""
    try:
        add_sum, buckets, bounds = histogram._sum.inc, histogram._buckets, histogram._upper_bounds
    except AttributeError:
        for ms, n in durations_ms.items():
            for _ in range(n):
                histogram.observe(ms / 1000)
        return
    for ms, n in durations_ms.items():
        seconds = ms / 1000
        add_sum(seconds * n)
        buckets[bisect_left(bounds, seconds)].inc(n)


class Metrics(Hooks):
    def __init__(
        self, task_types: Iterable[str] = (), *, settings: Settings | None = None, registry: Registry | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.task_types = sorted(task_types)
        self.claimed = Counter("worker_jobs_claimed", "Jobs claimed (attempts started).", ["task_type"], registry=r)
        self.succeeded = Counter("worker_jobs_succeeded", "Attempts that succeeded.", ["task_type"], registry=r)
        self.failed = Counter(
            "worker_jobs_failed", "Jobs that failed permanently (no attempt left, or a permanent error).",
            ["task_type"], registry=r,
        )
        self.retried = Counter(
            "worker_jobs_retried", "Attempts that failed and were scheduled to run again.", ["task_type"], registry=r
        )
        self.recovered = Counter(
            "worker_leases_recovered", "Expired leases taken back by lease recovery.", ["task_type"], registry=r
        )
        self.duration = Histogram(
            "worker_job_duration_seconds", "Duration of finished attempts.", ["task_type", "outcome"],
            buckets=DURATION_BUCKETS, registry=r,
        )
        self.reconnects = Counter(
            "worker_listener_reconnects", "Times the LISTEN connection was re-established.", registry=r
        )
        self.last_success = Gauge(
            "worker_job_last_success_timestamp_seconds", "Unix time of the last successful attempt.",
            ["task_type"], registry=r,
        )
        self.rate_wait = Histogram(
            "worker_rate_limit_wait_seconds", "Time requests waited for a token of a shared rate limit.",
            ["bucket"], buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r,
        )
        self.rate_fallback = Gauge(
            "worker_rate_limit_fallback", "1 while this process uses its local share of a shared rate limit "
            "(the database unreachable).", ["bucket"], registry=r,
        )
        self.throttled = Counter(
            "worker_game_platform_throttled", "HTTP 429 answers received from the game platform.", registry=r
        )
        for task_type in self.task_types:
            for counter in (self.claimed, self.succeeded, self.failed, self.retried):
                counter.labels(task_type)
        self._by_type: dict[str, _TaskMetrics] = {}
        self.jobs_snapshot: dict[tuple[str, str], int] = {}
        self.due_snapshot: dict[str, int] = {}
        self.slots_snapshot: list[SlotState] = []
        self.oldest_due_age_s = 0.0
        self.progress_snapshot: dict[str, tuple[float, float]] = {}
        self.database_up = False
        self.settings = settings
        """With settings and a registry, a scrape also reads the schedules' track record (worker_schedule_* gauges)
        of the schedules `registry`'s tasks declare (overrides applied) and those known to the database."""
        self.schedule_registry = registry
        self.listener_up: Callable[[], bool] | None = None
        self.workers: list[dict[str, Any]] = []
        self.unserved: list[dict[str, Any]] = []
        self.tracks: list[dict[str, Any]] = []
        self.registry.register(_QueueCollector(self))

    # --- hooks ----------------------------------------------------------------------------------
    def job_claimed(self, job: Job) -> None:
        self._children(job.task_type).claimed.inc()

    def job_finished(self, finished: Finished) -> None:
        c = self._children(finished.task_type)
        if finished.outcome == "succeeded":
            c.duration_succeeded.observe(finished.duration_ms / 1000)
            c.succeeded.inc()
            c.last_success.set(finished.finished_at.timestamp())
        elif finished.outcome == "retry":
            self.duration.labels(finished.task_type, finished.outcome).observe(finished.duration_ms / 1000)
            c.retried.inc()
        else:
            self.duration.labels(finished.task_type, finished.outcome).observe(finished.duration_ms / 1000)
            c.failed.inc()

    def jobs_claimed(self, jobs: Sequence[Job]) -> None:
        if len(jobs) == 1:
            self.job_claimed(jobs[0])
            return
        for task_type, n in Tally(j.task_type for j in jobs).items():
            self._children(task_type).claimed.inc(n)

    def jobs_finished(self, batch: Sequence[Finished]) -> None:
        """Per batch: one increment and one last-success time per task type; a duration observed per job."""
        succeeded: dict[str, list[Finished]] = {}
        for f in batch:
            if f.outcome == "succeeded":
                succeeded.setdefault(f.task_type, []).append(f)
            else:
                self.job_finished(f)
        for task_type, done in succeeded.items():
            c = self._children(task_type)
            _observe_ms(c.duration_succeeded, Tally(f.duration_ms for f in done))
            c.succeeded.inc(len(done))
            c.last_success.set(max(f.finished_at for f in done).timestamp())

    def _children(self, task_type: str) -> _TaskMetrics:
        """The labelled children of one task type, looked up once (labels() is costly per job)."""
        c = self._by_type.get(task_type)
        if c is None:
            c = self._by_type[task_type] = _TaskMetrics(
                claimed=self.claimed.labels(task_type),
                succeeded=self.succeeded.labels(task_type),
                retried=self.retried.labels(task_type),
                failed=self.failed.labels(task_type),
                last_success=self.last_success.labels(task_type),
                duration_succeeded=self.duration.labels(task_type, "succeeded"),
            )
        return c

    def lease_recovered(self, row: Mapping[str, Any]) -> None:
        self.recovered.labels(str(row.get("task_type", ""))).inc()
        if row.get("status") == "failed":
            self.failed.labels(str(row.get("task_type", ""))).inc()

    def listener_reconnected(self) -> None:
        self.reconnects.inc()

    # --- shared rate limits (worker.game_platform.ratelimit.LimiterMetrics) -----------------------------
    def rate_limit_waited(self, bucket: str, seconds: float) -> None:
        self.rate_wait.labels(bucket).observe(seconds)

    def rate_limit_fallback(self, bucket: str, active: bool) -> None:
        self.rate_fallback.labels(bucket).set(1.0 if active else 0.0)

    def platform_throttled(self) -> None:
        self.throttled.inc()

    # --- scrape ---------------------------------------------------------------------------------
    async def refresh(self, conn: Executor, *, timeout_s: float = 5.0) -> bool:
        """Read the queue's shape from the database; on failure keep the counters and report database_up 0."""
        try:
            with anyio.fail_after(timeout_s), translate():
                rows: Sequence[Any] = await conn.fetch(_Q["jobs_by_status"])
                oldest = (await conn.fetchrow(_Q["oldest_due_pending"]))["age_s"]
                progress: Sequence[Any] = await conn.fetch(_PROGRESS["running_progress"])
                workers = await nodes.live_workers(conn)
                unserved = await nodes.unserved_task_types(conn)
                tracks = []
                if self.settings is not None and self.schedule_registry is not None:
                    now = await conn.fetchval(_Q["db_now"])
                    tracks = await history.track_records(conn, self.settings, now, registry=self.schedule_registry)
                due: Sequence[Any] = await conn.fetch(_Q["due_pending_by_task_type"])
                slots = await limits.slots(conn)
        except Exception as exc:
            log.warning("metrics.database_unavailable", error=f"{type(exc).__name__}: {exc}")
            self.database_up = False
            return False
        snapshot = {(t, s): 0 for t in self.task_types for s in STATUSES}
        for row in rows:
            snapshot[(row["task_type"], row["status"])] = int(row["n"])
        self.jobs_snapshot = snapshot
        self.due_snapshot = {t: 0 for t in self.task_types} | {row["task_type"]: int(row["n"]) for row in due}
        self.slots_snapshot = slots
        self.oldest_due_age_s = max(0.0, float(oldest or 0.0))
        self.progress_snapshot = {r["task_type"]: (float(r["done"] or 0), float(r["total"] or 0)) for r in progress}
        self.workers, self.unserved, self.tracks = workers, unserved, tracks
        self.database_up = True
        return True

    def fleet_metrics(self) -> Iterator[Metric]:
        """Live workers, unserved task types, the schedules' track record and the listener (tests/test_nodes.py,
        deploy/prometheus/worker-alerts.yml)."""
        live = GaugeMetricFamily(
            "worker_live_workers", "Live worker daemons that handle a task type (read at scrape time).",
            labels=["task_type"],
        )
        by_type = dict.fromkeys(self.task_types, 0)
        for w in self.workers:
            for t in w["task_types"]:
                by_type[t] = by_type.get(t, 0) + 1
        for t, n in sorted(by_type.items()):
            live.add_metric([t], n)
        yield live
        unserved = GaugeMetricFamily(
            "worker_unserved_due_jobs", "Due pending jobs of a task type (not paused) that no live worker handles.",
            labels=["task_type"],
        )
        for u in self.unserved:
            unserved.add_metric([u["task_type"]], int(u["due"]))
        yield unserved
        bad = GaugeMetricFamily(
            "worker_schedule_unhealthy", "1 when the schedule's last slot failed or was missed.", labels=["schedule"]
        )
        streak = GaugeMetricFamily(
            "worker_schedule_consecutive_failures", "The schedule's latest slots that failed or were missed in a row.",
            labels=["schedule"],
        )
        success = GaugeMetricFamily(
            "worker_schedule_last_success_timestamp_seconds",
            "Unix time the schedule's latest succeeded slot finished (absent when none of its last slots did).",
            labels=["schedule"],
        )
        for t in self.tracks:
            bad.add_metric([t["name"]], 1.0 if t["unhealthy"] else 0.0)
            streak.add_metric([t["name"]], t["consecutive_failures"])
            if t["last_success_at"] is not None:
                success.add_metric([t["name"]], t["last_success_at"].timestamp())
        yield from (bad, streak, success)
        yield GaugeMetricFamily(
            "worker_schedules_unhealthy", "Schedules whose last slot failed or was missed.",
            value=sum(1 for t in self.tracks if t["unhealthy"]),
        )
        if self.listener_up is not None:
            yield GaugeMetricFamily(
                "worker_listener_up", "1 while this worker's LISTEN connection is up (1 in poll-only mode).",
                value=1.0 if self.listener_up() else 0.0,
            )

    def render(self) -> bytes:
        return generate_latest(self.registry)
