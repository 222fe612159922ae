"""Cleanup's duty cycle and deadline (worker/operations.py `cleanup`, worker/builtin/cleanup.py), on an injected
clock and sleep and a fake connection: each batch "takes" a set time on the fake clock, nothing real waits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.support.daemon import make_settings
from worker import operations
from worker.builtin import default_registry
from worker.builtin.cleanup import CleanupPayload, DueWaitProbe, cleanup_budget_s, cleanup_run
from worker.errors import InvalidInput
from worker.queue import Job, NewJob
from worker.schedules import schedules_of
from worker.task_policy import apply_overrides
from worker.tasks import TaskContext

RETENTION = {"succeeded_older_than": timedelta(days=14), "failed_older_than": timedelta(days=60)}


class FakeClock:
    """The time, advanced by the fake connection's batches and by the recorded sleeps only."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeConn:
    """Answers cleanup_batch: each call deletes the next count of `batches` and takes the next of `took_s`."""

    def __init__(self, clock: FakeClock, batches: list[int], took_s: list[float]) -> None:
        self.clock, self.batches, self.took_s = clock, list(batches), list(took_s)
        self.calls: list[tuple[Any, ...]] = []
        self.at: list[float] = []

    async def fetchrow(self, _sql: str, *args: Any) -> dict[str, Any]:
        self.calls.append(args)
        self.at.append(self.clock.now)
        jobs = self.batches.pop(0) if self.batches else 0
        self.clock.now += self.took_s.pop(0) if self.took_s else 0.0
        n = len(self.calls)
        return {"jobs": jobs, "succeeded": jobs, "runs": jobs, "last_id": uuid.UUID(int=n) if jobs else None}


async def test_after_each_full_batch_it_pauses_so_batches_take_the_set_share_of_the_time() -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[10, 10, 10, 4], took_s=[0.2, 0.4, 0.1, 0.3])
    result = await operations.cleanup(conn, **RETENTION, batch_size=10, duty_cycle_percent=25,
                                      clock=clock, sleep=clock.sleep)
    assert clock.sleeps == pytest.approx([0.6, 1.2, 0.3])  # 3 x each batch's time; none after the last one
    assert (result.jobs, result.batches, result.finished) == (34, 4, True)
    assert result.busy_s == pytest.approx(1.0) and result.paused_s == pytest.approx(2.1)
    full = sum([0.2, 0.4, 0.1])
    assert full / (full + sum(clock.sleeps)) == pytest.approx(0.25)


async def test_at_a_duty_cycle_of_100_percent_it_never_pauses() -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[5, 5, 5, 0], took_s=[0.5, 0.5, 0.5, 0.1])
    result = await operations.cleanup(conn, **RETENTION, batch_size=5, duty_cycle_percent=100,
                                      clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [] and (result.jobs, result.batches, result.finished) == (15, 4, True)


async def test_each_batch_starts_after_the_key_where_the_previous_one_stopped() -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[3, 3, 1], took_s=[0.1, 0.1, 0.1])
    await operations.cleanup(conn, **RETENTION, batch_size=3, clock=clock, sleep=clock.sleep)
    keys = [call[3:] for call in conn.calls]
    assert keys == [(uuid.UUID(int=0),), (uuid.UUID(int=1),), (uuid.UUID(int=2),)]


async def test_a_run_stops_at_its_deadline_and_says_it_did_not_finish() -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[10] * 100, took_s=[1.0] * 100)
    # 50 %: a batch of 1 s, then 1 s of pause; the deadline 5 s on allows batches at 0, 2 and 4 s only.
    result = await operations.cleanup(conn, **RETENTION, batch_size=10, duty_cycle_percent=50,
                                      deadline=clock.now + 5.0, clock=clock, sleep=clock.sleep)
    assert [t - 1000.0 for t in conn.at] == [0.0, 2.0, 4.0]
    assert (result.jobs, result.batches, result.finished) == (30, 3, False)
    assert clock.now <= 1000.0 + 5.0 + 1.0  # no pause runs past the deadline


async def test_a_run_that_finishes_before_its_deadline_says_it_finished() -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[10, 2], took_s=[1.0, 1.0])
    result = await operations.cleanup(conn, **RETENTION, batch_size=10, duty_cycle_percent=50,
                                      deadline=clock.now + 60.0, clock=clock, sleep=clock.sleep)
    assert (result.jobs, result.finished) == (12, True)


@pytest.mark.parametrize("percent", [0.0, -5.0, 100.5, float("nan")])
async def test_a_duty_cycle_outside_0_to_100_percent_is_rejected_before_anything_is_deleted(percent: float) -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[10], took_s=[0.1])
    with pytest.raises(InvalidInput, match="duty cycle"):
        await operations.cleanup(conn, **RETENTION, duty_cycle_percent=percent,
                                 clock=clock, sleep=clock.sleep)
    assert conn.calls == []


def _registry(cron: str) -> Any:
    settings = make_settings("postgresql://127.0.0.1/x", schedule_cleanup=cron)
    return apply_overrides(default_registry(), settings), settings


def test_the_budget_runs_to_the_next_slot_of_the_cleanup_schedule() -> None:
    every_minute, _ = _registry("* * * * *")
    assert [s.cron for s in schedules_of(every_minute) if s.task_type == "cleanup"] == ["* * * * *"]
    assert cleanup_budget_s(every_minute, datetime(2030, 1, 1, 10, 30, 15, tzinfo=UTC)) == pytest.approx(45.0)
    daily, _ = _registry("15 3 * * *")
    assert cleanup_budget_s(daily, datetime(2030, 1, 1, 3, 15, 0, tzinfo=UTC)) == pytest.approx(86400.0)
    unscheduled, _ = _registry("")
    assert cleanup_budget_s(unscheduled, datetime(2030, 1, 1, tzinfo=UTC)) is None
    assert cleanup_budget_s(None, datetime(2030, 1, 1, tzinfo=UTC)) is None


def _ctx(conn: FakeConn, cron: str = "* * * * *", **overrides: Any) -> TaskContext:
    registry, settings = _registry(cron)
    settings = settings.model_copy(update=overrides)
    job = Job(uuid.uuid4(), "cleanup", {}, 1, 3, 1000, datetime(2030, 1, 1, 10, 30, 30, tzinfo=UTC))
    return TaskContext(job=job, worker_id="w", resources={"pool": conn, "settings": settings, "registry": registry})


NOW = datetime(2030, 1, 1, 10, 30, 30, tzinfo=UTC)


async def _behind() -> float:
    return 60.0  # the oldest due job has waited a minute: the queue is behind, cleanup keeps its duty cycle


async def _keeping_up() -> float:
    return 0.2


async def test_a_piece_stops_at_half_the_claim_ahead_threshold_and_enqueues_the_next_piece_after_its_pause() -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[10] * 100, took_s=[0.01] * 100)
    ctx = _ctx(conn, claim_ahead_below_ms=50.0, cleanup_duty_cycle_percent=25.0, cleanup_batch_size=10)
    enqueued: list[NewJob] = []

    async def enqueue(job: NewJob) -> None:
        enqueued.append(job)

    result = await cleanup_run(CleanupPayload(), ctx, now=NOW, clock=clock, enqueue=enqueue, waited_s=_behind)
    assert result == {"jobs": 30, "succeeded": 30, "runs": 30, "batches": 3}  # 3 x 10 ms reach 25 ms
    assert clock.sleeps == []  # a piece never holds its slot to pause
    [following] = enqueued
    assert following.task_type == "cleanup" and following.priority == 1000
    assert following.run_at == NOW + timedelta(seconds=0.03 + 0.09)  # its time, then 3 x its time at 25 %
    assert following.payload == {
        "succeeded_older_than_days": None, "failed_older_than_days": None,
        "until": "2030-01-01T10:31:00Z", "after_created_at": None,
        "after_id": str(uuid.UUID(int=3)), "deleted_before": 30,
        "began_at": "2030-01-01T10:30:30Z", "began_key_ms": None,  # its ids carry no time: no pacing
    }


async def test_the_next_piece_continues_where_the_last_one_stopped_and_keeps_the_runs_deadline() -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[10, 10, 10, 10], took_s=[0.02] * 4)
    ctx = _ctx(conn, claim_ahead_below_ms=50.0, cleanup_duty_cycle_percent=50.0, cleanup_batch_size=10)
    enqueued: list[NewJob] = []

    async def enqueue(job: NewJob) -> None:
        enqueued.append(job)

    key = uuid.UUID(int=99)
    # a piece enqueued before migration 018 also carries the created_at of its (created_at, id) key: ignored
    payload = CleanupPayload(until=datetime(2030, 1, 1, 10, 35, tzinfo=UTC), after_created_at=datetime(2029, 12, 1,
                             tzinfo=UTC), after_id=key, deleted_before=500)
    await cleanup_run(payload, ctx, now=NOW, clock=clock, enqueue=enqueue, waited_s=_behind)
    assert conn.calls[0][3:] == (key,)
    [following] = enqueued
    assert following.payload["until"] == "2030-01-01T10:35:00Z" and following.payload["deleted_before"] == 520


async def test_a_run_that_would_go_past_its_schedules_next_slot_logs_cleanup_behind_and_stops() -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[10] * 100, took_s=[0.03] * 100)
    ctx = _ctx(conn, claim_ahead_below_ms=50.0, cleanup_duty_cycle_percent=50.0, cleanup_batch_size=10)
    enqueued: list[NewJob] = []

    async def enqueue(job: NewJob) -> None:
        enqueued.append(job)

    payload = CleanupPayload(until=NOW + timedelta(seconds=0.05), deleted_before=7000)
    with capture_logs() as logs:
        result = await cleanup_run(payload, ctx, now=NOW, clock=clock, enqueue=enqueue, waited_s=_behind)
    assert result["jobs"] == 10 and enqueued == []  # 30 ms, then a 30 ms pause: past the slot
    behind = [e for e in logs if e["event"] == "cleanup.behind"]
    assert len(behind) == 1 and behind[0]["log_level"] == "warning" and behind[0]["deleted_jobs"] == 7010


async def test_a_piece_that_deletes_the_last_expired_jobs_enqueues_nothing_and_logs_no_warning() -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[4], took_s=[0.01])
    ctx = _ctx(conn, cleanup_batch_size=10)
    enqueued: list[NewJob] = []

    async def enqueue(job: NewJob) -> None:
        enqueued.append(job)

    with capture_logs() as logs:
        result = await cleanup_run(CleanupPayload(), ctx, now=NOW, clock=clock, enqueue=enqueue, waited_s=_behind)
    assert result["jobs"] == 4 and enqueued == [] and not [e for e in logs if e["event"] == "cleanup.behind"]


async def _nothing_due() -> None:
    return None


async def _next_piece(waited: Any, yield_after_s: float) -> NewJob:
    """The piece a 30 ms piece at a 25 % duty cycle enqueues, with the oldest due job's wait read from `waited`."""
    clock = FakeClock()
    conn = FakeConn(clock, batches=[10] * 100, took_s=[0.01] * 100)
    ctx = _ctx(conn, claim_ahead_below_ms=50.0, cleanup_duty_cycle_percent=25.0, cleanup_batch_size=10,
               cleanup_yield_after_s=yield_after_s)
    enqueued: list[NewJob] = []

    async def enqueue(job: NewJob) -> None:
        enqueued.append(job)

    await cleanup_run(CleanupPayload(), ctx, now=NOW, clock=clock, enqueue=enqueue, waited_s=waited)
    [following] = enqueued
    return following


@pytest.mark.parametrize(("waited", "yield_after_s"), [(_keeping_up, 1.0), (_nothing_due, 1.0), (_behind, 61.0)])
async def test_while_the_queue_keeps_up_the_next_piece_is_due_at_once(waited: Any, yield_after_s: float) -> None:
    following = await _next_piece(waited, yield_after_s)
    assert following.run_at is None and following.payload["deleted_before"] == 30  # due now: no pause


@pytest.mark.parametrize("yield_after_s", [0.0, 0.1])
async def test_once_a_due_job_has_waited_past_the_threshold_the_duty_cycles_pause_comes_back(
    yield_after_s: float
) -> None:
    following = await _next_piece(_keeping_up, yield_after_s)
    assert following.run_at == NOW + timedelta(seconds=0.03 + 0.09)  # its time, then 3 x its time at 25 %


async def test_at_a_full_duty_cycle_the_next_piece_is_due_at_once_and_the_queue_is_not_probed() -> None:
    clock = FakeClock()
    conn = FakeConn(clock, batches=[10] * 100, took_s=[0.01] * 100)
    ctx = _ctx(conn, claim_ahead_below_ms=50.0, cleanup_duty_cycle_percent=100.0, cleanup_batch_size=10)
    probes: list[None] = []
    enqueued: list[NewJob] = []

    async def waited() -> float:
        probes.append(None)
        return 60.0

    async def enqueue(job: NewJob) -> None:
        enqueued.append(job)

    await cleanup_run(CleanupPayload(), ctx, now=NOW, clock=clock, enqueue=enqueue, waited_s=waited)
    [following] = enqueued
    assert following.run_at is None and probes == []


class ProbedConn(FakeConn):
    """FakeConn that also answers the oldest due job's wait (oldest_due_wait), counting the readings."""

    def __init__(self, clock: FakeClock, wait_s: float) -> None:
        super().__init__(clock, batches=[10] * 100, took_s=[0.01] * 100)
        self.wait_s, self.probes = wait_s, 0

    async def fetchval(self, _sql: str, *args: Any) -> float:
        self.probes += 1
        return self.wait_s


async def test_the_pieces_of_one_daemon_read_the_oldest_due_jobs_wait_at_most_once_a_second() -> None:
    clock = FakeClock()
    conn = ProbedConn(clock, wait_s=60.0)
    ctx = _ctx(conn, claim_ahead_below_ms=50.0, cleanup_duty_cycle_percent=25.0, cleanup_batch_size=10)
    enqueued: list[NewJob] = []

    async def enqueue(job: NewJob) -> None:
        enqueued.append(job)

    for _ in range(5):  # 30 ms each: all within a second of the first reading
        await cleanup_run(CleanupPayload(), ctx, now=NOW, clock=clock, enqueue=enqueue)
    assert conn.probes == 1
    assert all(j.run_at == NOW + timedelta(seconds=0.03 + 0.09) for j in enqueued)  # each one paused: behind
    conn.wait_s = 0.2  # the queue caught up; the next reading, a second after the first, sees it
    clock.now += 1.0
    await cleanup_run(CleanupPayload(), ctx, now=NOW, clock=clock, enqueue=enqueue)
    assert conn.probes == 2 and enqueued[-1].run_at is None


async def test_the_probe_returns_its_last_reading_until_it_is_max_age_old() -> None:
    clock = FakeClock()
    readings = iter([3.0, None, 7.0])
    calls: list[float] = []

    async def read() -> float | None:
        calls.append(clock.now)
        return next(readings)

    probe = DueWaitProbe(max_age_s=1.0, clock=clock)
    assert await probe(read) == 3.0
    clock.now += 0.75  # (times in binary fractions: the sums are exact)
    assert await probe(read) == 3.0
    clock.now += 0.25
    assert await probe(read) is None  # nothing due: also a reading, kept as long
    clock.now += 0.5
    assert await probe(read) is None
    clock.now += 0.5
    assert await probe(read) == 7.0
    assert calls == [1000.0, 1001.0, 1002.0]
