"""The daemon: fetch loop, bounded concurrency, heartbeats, lease recovery, graceful stop.

The loops (listener, fetcher, heartbeat, completions flusher, and extras such as the HTTP port and the
scheduler) are named and supervised in one anyio task group: a loop that dies unexpectedly stops the daemon
with exit code 1 instead of leaving it half alive. Each job runs in an asyncio task of its own (the hot path:
one cheap task per job, not a task group per job) that the daemon tracks, times out and cancels itself.
Stopping is soft, then hard: stop claiming, give running jobs `shutdown_grace_s`, then cancel what is left and
hand those jobs back to pending at once.
"""

from __future__ import annotations

import asyncio
import math
import random
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from operator import attrgetter
from typing import Any

import anyio
import asyncpg
import structlog

from worker import db, queue
from worker.errors import DatabaseUnavailable
from worker.hooks import Hooks
from worker.logs import job_event, job_lines
from worker.queue import Finished, Job
from worker.runtime.claim_ahead import ahead_batches, hold
from worker.runtime.completions import Completions
from worker.runtime.deadlines import Deadlines
from worker.runtime.jobrun import Plan, attempt, plan_for
from worker.runtime.leases import LeaseKeeper, RunningJob, report_recovered
from worker.runtime.listener import Listener
from worker.runtime.stopping import write_back
from worker.runtime.wakeup import Wakeup
from worker.runtime.walk import WalkFrom
from worker.settings import Settings
from worker.tasks import Registry, job_context

__all__ = ["Daemon", "RunningJob"]

log = structlog.get_logger("worker.daemon")
Loop = Callable[[], Awaitable[None]]


class Daemon:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        pool: asyncpg.Pool,
        *,
        hooks: Hooks | None = None,
        resources: dict[str, Any] | None = None,
        task_types: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.pool = pool
        self.hooks = hooks or Hooks()
        self.resources = resources or {}
        self.worker_id = settings.worker_id
        self.task_types = task_types if task_types is not None else registry.names()
        self.plans: dict[str, Plan] = {task.name: plan_for(task, settings) for task in registry}
        """Each task type's timeout and backoff (its own policy), worked out once."""
        self.stop_event = anyio.Event()
        self._stopping = False  # stop_event.is_set(), read once per job
        self.started = anyio.Event()
        self.wakeup = Wakeup()
        self.slot_freed = Wakeup()
        self.running: dict[uuid.UUID, RunningJob] = {}
        self.ready: dict[uuid.UUID, RunningJob] = {}
        """Claimed ahead (leased, heartbeated) and waiting for a slot; only while jobs are short."""
        self._avg_job_ms = math.inf  # moving average of attempt durations; no claiming ahead until known
        self.completions = Completions(
            pool, self.worker_id, self.hooks, flush_ms=settings.completion_flush_ms,
            call_timeout_s=settings.db_call_timeout_s,
        )
        self.completions.on_retry_scheduled = self.wakeup  # re-arm the fetcher's timer for our own retries
        self.to_release: list[tuple[uuid.UUID, int, datetime]] = []
        self.leases = LeaseKeeper(
            pool, self.worker_id, lease_s=settings.lease_s, renew_every_s=settings.heartbeat_interval_s,
            held=lambda: [*self.running.values(), *self.ready.values()],
            also_renew=lambda: self.completions.pending, lose=self._lose_lease,
        )
        self.deadlines = Deadlines(lambda: self.running.values(), lambda rj: self._cancel(rj, "timeout"))
        self.exit_code = 0
        self.alive: dict[str, bool] = {}
        self.extra_loops: dict[str, Loop] = {}
        self.listener: Listener | None = None
        if settings.listen_enabled:
            self.listener = Listener(
                settings.listen_dsn,
                wake=self._on_notify,
                probe_interval_s=settings.listen_probe_interval_s,
                probe_timeout_s=settings.listen_probe_timeout_s,
                connect_timeout_s=settings.db_connect_timeout_s,
                on_reconnect=self.hooks.listener_reconnected,
            )
        self.last_recovery_monotonic: float | None = None
        self._claim_started: float | None = None
        """When the claim under way started (None: the fetch loop is not in a claim)."""
        self._claims_failing_since: float | None = None
        """When the first of the claims failing since the last one that succeeded started."""
        self._walk = WalkFrom()
        # Short jobs free their slots in bunches: a claim waits up to this long for half the slots to be free (a
        # whole batch while claiming ahead), so that one statement fills several (a round trip per job is what
        # limits throughput).
        self._batch_min = max(1, settings.concurrency // 2)
        self._batch_wait_s = max(settings.completion_flush_ms, 1.0) / 1000

    # --- control --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Soft stop: no more claims; running jobs get the grace period."""
        if not self.stop_event.is_set():
            log.info("daemon.stopping", running=len(self.running), grace_s=self.settings.shutdown_grace_s)
        self.stop_event.set()
        self._stopping = True
        self.wakeup.set()
        self.slot_freed.set()

    def wake(self) -> None:
        """Fetch now (the HTTP trigger, resume, tests)."""
        self.wakeup.set()

    def add_loop(self, name: str, loop: Loop) -> None:
        """Another supervised loop (HTTP server, scheduler) that runs until the daemon stops."""
        self.extra_loops[name] = loop

    def _on_notify(self, task_type: str) -> None:
        if not task_type or task_type in self.task_types:
            self.wakeup.set()

    # --- main -----------------------------------------------------------------------------------
    async def run(self, *, handle_signals: bool = False) -> int:
        log.info(
            "daemon.starting", worker_id=self.worker_id, concurrency=self.settings.concurrency,
            task_types=self.task_types, listen=self.listener is not None,
        )
        async with anyio.create_task_group() as services:
            if handle_signals:
                services.start_soon(self._signals, name="signals")
            loops: dict[str, Loop] = {"heartbeat": self.leases.run, "flusher": self.completions.run}
            if self.listener is not None:
                listener = self.listener
                loops["listener"] = lambda: listener.run(self.stop_event)
            loops.update(self.extra_loops)
            for name, fn in loops.items():
                services.start_soon(self._supervise, name, fn, name=name)
            self.started.set()
            await self._supervise("fetcher", self._fetch_loop)
            await self._drain()
            self.deadlines.close()
            await write_back(
                self.pool, self.worker_id, self.to_release, self.completions,
                call_timeout_s=self.settings.db_call_timeout_s,
            )
            services.cancel_scope.cancel()
        log.info("daemon.stopped", exit_code=self.exit_code)
        return self.exit_code

    async def _supervise(self, name: str, fn: Loop) -> None:
        self.alive[name] = True
        try:
            await fn()
        except Exception as exc:
            log.error("daemon.loop_crashed", loop=name, error=f"{type(exc).__name__}: {exc}", exc_info=True)
            self.exit_code = 1
            self.stop()
            return
        finally:
            self.alive[name] = False
        if not self.stop_event.is_set():
            log.error("daemon.loop_exited", loop=name)
            self.exit_code = 1
            self.stop()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if not self.stop_event.is_set():
                    log.info("daemon.signal", signal=signal.Signals(signum).name)
                    self.stop()
                else:  # a second signal: hard stop now, jobs handed back
                    log.warning("daemon.signal_again", signal=signal.Signals(signum).name)
                    self._cancel_all("shutdown")

    # --- fetching -------------------------------------------------------------------------------
    async def _fetch_loop(self) -> None:
        failures = 0
        timer_fired = True  # the first fetch also sweeps expired leases
        while not self.stop_event.is_set():
            room = self._room()
            if room <= 0:
                self.slot_freed.clear()
                if self._room() <= 0:
                    await self.slot_freed.wait()
                continue
            if (self.running or self.ready) and room < self._batch_target():
                await self._gather_slots()
                room = self._room()
            self.wakeup.clear()
            self._claim_started = time.monotonic()
            try:
                jobs = await self._claim(room, recover=timer_fired or self._recovery_due())
                failures = 0
                self._claims_failing_since = None
            except DatabaseUnavailable as exc:
                failures += 1
                if self._claims_failing_since is None:
                    self._claims_failing_since = self._claim_started
                delay = min(5.0, 0.1 * 2 ** min(failures, 6)) * (0.5 + random.random() / 2)
                log.warning("fetch.database_unavailable", error=str(exc), retry_in_s=round(delay, 2))
                await self.wakeup.wait(delay)
                continue
            finally:
                self._claim_started = None
            self._fill_slots()
            timer_fired = False
            if len(jobs) < room:  # nothing more due now: sleep until NOTIFY, a timer, or stop
                timer_fired = not await self.wakeup.wait(self._idle_timeout_s())

    def fetch_state(self) -> dict[str, Any]:
        """The fetch loop as /readyz and /healthz show it. `stalled` (not ready): no claim has succeeded for longer
        than the poll interval plus one call deadline while the loop kept trying; `hung` (not alive): one claim
        has outlived its own deadline, which db.bounded should make impossible (tests/test_faults_dirty.py)."""
        now = time.monotonic()
        in_call_s = None if self._claim_started is None else now - self._claim_started
        failing_s = None if self._claims_failing_since is None else now - self._claims_failing_since
        trying_s = max(in_call_s or 0.0, failing_s or 0.0)
        deadline_s = self.settings.db_call_timeout_s
        return {
            "stalled": trying_s > self.settings.poll_interval_s + deadline_s,
            "hung": in_call_s is not None and in_call_s > deadline_s + 5.0,
            "no_claim_for_s": round(trying_s, 3),
            "in_claim_s": None if in_call_s is None else round(in_call_s, 3),
        }

    def _room(self) -> int:
        """How many jobs one claim may take now: the free slots, plus batches ahead while jobs are short (the
        next claim's round trip then overlaps the running jobs instead of following them)."""
        limit = self.settings.concurrency * (1 + self._ahead_batches())
        return limit - len(self.running) - len(self.ready)

    def _ahead_batches(self) -> int:
        since = time.monotonic() - (below_ms := self.settings.claim_ahead_below_ms) / 1000
        long = sum(1 for rj in self.running.values() if rj.started <= since)
        return ahead_batches(self._avg_job_ms, below_ms, long_running=long, slots=self.settings.concurrency)

    def _batch_target(self) -> int:
        """Claim when this many jobs fit: half the slots, or a whole batch while claiming ahead."""
        return self.settings.concurrency if self._ahead_batches() else self._batch_min

    def _fill_slots(self) -> None:
        ready, running, slots = self.ready, self.running, self.settings.concurrency
        while ready and len(running) < slots and not self._stopping:
            self._start(ready.pop(next(iter(ready))))

    def _recovery_due(self) -> bool:
        last = self.last_recovery_monotonic
        return last is None or time.monotonic() - last >= self.settings.recovery_interval_s

    def _idle_timeout_s(self) -> float:
        """The jittered poll, or sooner when lease recovery or one of our own retries falls due. Whatever
        fires, the next fetch is the one statement that also recovers leases (one query per wake-up)."""
        timeout = self.settings.poll_interval_s * (0.8 + 0.4 * random.random())
        if self.last_recovery_monotonic is not None:
            due = self.last_recovery_monotonic + self.settings.recovery_interval_s - time.monotonic()
            timeout = min(timeout, max(0.0, due))
        retry_in = self.completions.next_retry_in_s()
        if retry_in is not None:
            timeout = min(timeout, retry_in)
        return timeout

    async def _gather_slots(self) -> None:
        deadline = time.monotonic() + self._batch_wait_s
        target = self._batch_target()
        while self._room() < target and not self.stop_event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.slot_freed.clear()
            await self.slot_freed.wait(remaining)

    async def _claim(self, free: int, *, recover: bool) -> list[Job]:
        """Claim up to `free` jobs in one statement (when `recover`, the same statement recovers leases) and
        start those that fit before the connection goes back to the pool: asyncpg's release takes a trip through
        the event loop, which the jobs' first steps then share (figures: docs/performance.md, "Figures moved
        out of code comments")."""
        recovered: list[dict[str, Any]] = []
        sent = time.monotonic()  # the leases run from the statement, not from its answer: the fence clock too
        walk_from = self._walk.next(sent)
        how: dict[str, Any] = {"worker_id": self.worker_id, "task_types": self.task_types, "limit": free,
                               "lease_s": self.settings.lease_s, "walk_from": walk_from}
        async with db.bounded(self.pool, self.settings.db_call_timeout_s) as conn:
            if recover:
                jobs, recovered = await queue.recover_and_claim(conn, **how)
            else:
                jobs = await queue.claim(conn, **how)
            self._walk.claimed(jobs, free, walk_from, sent)
            if jobs:
                self._claimed(jobs, sent)
        if recover:
            self.last_recovery_monotonic = time.monotonic()
            report_recovered(recovered, self.worker_id, self.hooks)
        return jobs

    # --- running --------------------------------------------------------------------------------
    def _claimed(self, jobs: list[Job], sent: float) -> None:
        """The jobs one claim took (their rows are `running` now): held, those that fit started, then logged and
        reported as a batch (the lines are rendered now, before any job runs; the write comes later)."""
        hold(self.ready, [(job.id, RunningJob(job, None, sent)) for job in jobs], attrgetter("job.priority"))
        self._fill_slots()
        with job_lines(log) as blog:  # one batch of lines, rendered in one step and written together
            for job in jobs:
                job_event(blog, "info", "job.claimed", job.id, job.task_type, job.attempt, self.worker_id)
        self.hooks.jobs_claimed(jobs)

    def _start(self, rj: RunningJob) -> None:
        job = rj.job
        rj.started = time.monotonic()
        self.running[job.id] = rj
        rj.task = asyncio.get_running_loop().create_task(self._run_job(rj), name=f"job {job.id!s}")

    async def _run_job(self, rj: RunningJob) -> None:
        """The daemon's side of one job: the shared per-job core (worker.jobrun.attempt) in one cheap task, then
        the slot freed and the end buffered for the batched completion write (or the job handed back)."""
        job = rj.job
        finished: Finished | None = None
        try:
            plan = self.plans.get(job.task_type) or plan_for(self.registry.get(job.task_type), self.settings)
            ctx = job_context(job, self.worker_id, self.resources)
            finished = await attempt(rj, plan, ctx, self.deadlines)
        except Exception as exc:  # a bug outside the handler: never lose the job, stop the daemon
            log.error("daemon.job_runner_crashed", job_id=str(job.id), error=repr(exc), exc_info=True)
            self.exit_code = 1
            self.stop()
            rj.stop_reason = "shutdown"
        finally:
            self.running.pop(job.id, None)
            self._fill_slots()
            self.slot_freed.set()
        if finished is not None:
            ms = float(finished.duration_ms)
            self._avg_job_ms = ms if math.isinf(self._avg_job_ms) else 0.8 * self._avg_job_ms + 0.2 * ms
        if rj.stop_reason == "lease":
            log.warning(
                "job.abandoned_lease_lost", job_id=str(job.id), task_type=job.task_type, attempt=job.attempt,
                worker_id=self.worker_id,
            )
        elif rj.stop_reason == "shutdown" or finished is None:
            self.to_release.append((job.id, job.attempt, job.started_at))
        else:
            self.completions.add(finished)

    def _cancel(self, rj: RunningJob, reason: str) -> None:
        if rj.stop_reason is None and rj.task is not None:
            rj.stop_reason = reason
            rj.task.cancel()

    def _cancel_all(self, reason: str) -> None:
        for rj in list(self.running.values()):
            self._cancel(rj, reason)

    # --- leases ---------------------------------------------------------------------------------
    def _lose_lease(self, rj: RunningJob, reason: str) -> None:
        log.warning(
            "job.lease_lost", job_id=str(rj.job.id), task_type=rj.job.task_type, attempt=rj.job.attempt,
            worker_id=self.worker_id, reason=reason,
        )
        if self.ready.pop(rj.job.id, None) is not None:  # not started: nothing to stop, just never start it
            rj.stop_reason = "lease"
            return
        self._cancel(rj, "lease")

    # --- stopping -------------------------------------------------------------------------------
    async def _drain(self) -> None:
        """Give running jobs the grace period, then cancel the rest; returns when every job task ended."""
        for rj in self.ready.values():  # claimed ahead, never started: straight back to pending
            self.to_release.append((rj.job.id, rj.job.attempt, rj.job.started_at))
        self.ready.clear()
        with anyio.move_on_after(self.settings.shutdown_grace_s):
            while self.running:
                self.slot_freed.clear()
                if self.running:
                    await self.slot_freed.wait()
        for rj in list(self.running.values()):
            log.warning(
                "job.interrupted", job_id=str(rj.job.id), task_type=rj.job.task_type, attempt=rj.job.attempt,
                worker_id=self.worker_id,
            )
        self._cancel_all("shutdown")
        tasks = [rj.task for rj in self.running.values() if rj.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
