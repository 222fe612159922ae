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
from worker.builtin.cleanup import CleanupPayload, cleanup_budget_s, cleanup_run
from worker.errors import InvalidInput
from worker.queue import Job
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
        return {"jobs": jobs, "succeeded": jobs, "runs": jobs,
                "last_created_at": datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=n) if jobs else None,
                "last_id": uuid.UUID(int=n) if jobs else None}


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
    assert keys[0] == (datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))
    assert keys[1:] == [(datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC), uuid.UUID(int=1)),
                        (datetime(2030, 1, 1, 0, 0, 2, tzinfo=UTC), uuid.UUID(int=2))]


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


async def test_the_cleanup_task_logs_cleanup_behind_when_it_reaches_its_next_slot() -> None:
    registry, settings = _registry("* * * * *")
    settings = settings.model_copy(update={"cleanup_duty_cycle_percent": 50.0, "cleanup_batch_size": 10})
    clock = FakeClock()
    conn = FakeConn(clock, batches=[10] * 100, took_s=[4.0] * 100)
    job = Job(uuid.uuid4(), "cleanup", {}, 1, 3, 1000, datetime(2030, 1, 1, 10, 30, 30, tzinfo=UTC))
    ctx = TaskContext(job=job, worker_id="w", resources={"pool": conn, "settings": settings, "registry": registry})
    with capture_logs() as logs:
        result = await cleanup_run(CleanupPayload(), ctx, now=datetime(2030, 1, 1, 10, 30, 30, tzinfo=UTC),
                                   clock=clock, sleep=clock.sleep)
    assert [t - 1000.0 for t in conn.at] == [0.0, 8.0, 16.0, 24.0]  # the budget: 30 s to 10:31
    assert result == {"jobs": 40, "succeeded": 40, "runs": 40, "batches": 4}
    behind = [e for e in logs if e["event"] == "cleanup.behind"]
    assert len(behind) == 1 and behind[0]["log_level"] == "warning"
    assert behind[0]["deleted_jobs"] == 40 and behind[0]["budget_s"] == pytest.approx(30.0)


async def test_the_cleanup_task_that_keeps_up_logs_no_warning() -> None:
    registry, settings = _registry("* * * * *")
    clock = FakeClock()
    conn = FakeConn(clock, batches=[1000, 1000, 5], took_s=[1.0, 1.0, 1.0])
    job = Job(uuid.uuid4(), "cleanup", {}, 1, 3, 1000, datetime(2030, 1, 1, 10, 30, 0, tzinfo=UTC))
    ctx = TaskContext(job=job, worker_id="w", resources={"pool": conn, "settings": settings, "registry": registry})
    with capture_logs() as logs:
        result = await cleanup_run(CleanupPayload(), ctx, now=datetime(2030, 1, 1, 10, 30, 0, tzinfo=UTC),
                                   clock=clock, sleep=clock.sleep)
    assert result["jobs"] == 2005 and not [e for e in logs if e["event"] == "cleanup.behind"]
