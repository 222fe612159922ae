"""The ceiling: a minimal hand-written asyncpg queue, to show what Python and this PostgreSQL allow.

Per claim cycle one statement claims with FOR UPDATE SKIP LOCKED and a lease; handlers run as asyncio tasks;
completions are buffered for FLUSH_S and written in one statement that marks the jobs succeeded and inserts
their ledger rows (a data-modifying CTE over `unnest`), durable (the server's default synchronous_commit).
Wake-ups: a statement-level NOTIFY trigger and a LISTEN connection, with a 10 s fallback poll (the same as
`worker`'s default). No retries, no heartbeats, no recovery: a floor to compare against, not a product.

Two modes, chosen by BENCH_CEILING_MODE in the process's environment:
* `like-worker` (the default; rows `ceiling`, `ceiling100`): what `worker` does with its claims. Claims commit
  asynchronously (synchronous_commit off on the claiming connection: a claim lost in a crash leaves the job
  pending), and it claims ahead of its free slots by worker/runtime/claim_ahead.py's own rule (`ahead_batches` over a
  moving average of the jobs' durations, the daemon's default 50 ms threshold): claimed jobs wait in a ready
  queue and start as slots free; while claiming ahead a claim waits until a whole batch (`concurrency` jobs)
  fits, else until half the slots are free, at most FLUSH_S (as the daemon's fetch loop does).
* `durable` (rows `ceiling_durable`, `ceiling100_durable`): every claim commits durably and takes no more
  than the free slots.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import latency
from worker.runtime.claim_ahead import ahead_batches

__all__ = [
    "MODES", "REMAINING_SQL", "SUCCEEDED_SQL", "Ceiling", "LatencyEnqueuer", "enqueue_noop", "install",
    "preload", "process_env", "run_worker",
]

MODE_ENV = "BENCH_CEILING_MODE"
MODES = ("like-worker", "durable")
AHEAD_BELOW_MS = 50.0  # the daemon's default WORKER_CLAIM_AHEAD_BELOW_MS

FLUSH_S = 0.002
POLL_S = 10.0
CHANNEL = "ceiling_jobs"

SCHEMA = """
CREATE TABLE ceiling_jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    status       text NOT NULL DEFAULT 'pending',
    attempts     integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX ceiling_jobs_pending_idx ON ceiling_jobs (id) WHERE status = 'pending';
CREATE TABLE ceiling_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome     text NOT NULL
);
CREATE FUNCTION ceiling_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ceiling_jobs', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER ceiling_notify AFTER INSERT ON ceiling_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION ceiling_notify();
"""

ENQUEUE_MANY = "INSERT INTO ceiling_jobs (payload) SELECT p::jsonb FROM unnest($1::text[]) AS p"
ENQUEUE_ONE = "INSERT INTO ceiling_jobs (payload) VALUES ($1::text::jsonb)"

CLAIM = """
UPDATE ceiling_jobs j
SET status = 'running', attempts = j.attempts + 1, locked_until = now() + interval '30 seconds'
FROM (
    SELECT id FROM ceiling_jobs WHERE status = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
) AS c
WHERE j.id = c.id
RETURNING j.id, j.attempts, j.payload::text AS payload
"""

COMPLETE = """
WITH d AS (
    SELECT * FROM unnest($1::bigint[], $2::integer[], $3::timestamptz[], $4::timestamptz[])
        AS d(id, attempt, started_at, finished_at)
), done AS (
    UPDATE ceiling_jobs j
    SET status = 'succeeded', finished_at = d.finished_at, locked_until = NULL
    FROM d
    WHERE j.id = d.id AND j.status = 'running'
    RETURNING j.id, d.attempt, d.started_at, d.finished_at
)
INSERT INTO ceiling_runs (job_id, attempt, started_at, finished_at, outcome)
SELECT id, attempt, started_at, finished_at, 'succeeded' FROM done
"""

REMAINING_SQL = "SELECT EXISTS (SELECT 1 FROM ceiling_jobs WHERE status IN ('pending', 'running'))"
SUCCEEDED_SQL = "SELECT count(*) FROM ceiling_jobs WHERE status = 'succeeded'"


# --- the harness side -------------------------------------------------------------------------------
async def install(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()


async def enqueue_noop(dsn: str, n: int, batch: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        done = 0
        while done < n:
            k = min(batch, n - done)
            await conn.execute(ENQUEUE_MANY, ["{}"] * k)
            done += k
    finally:
        await conn.close()


class LatencyEnqueuer:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, dsn: str) -> LatencyEnqueuer:
        return cls(await asyncpg.connect(dsn))

    async def enqueue(self, t: float) -> None:
        await self.conn.execute(ENQUEUE_ONE, json.dumps({"t": t}))

    async def close(self) -> None:
        await self.conn.close()


def process_env(dsn: str, concurrency: int, batch_size: int | None) -> dict[str, str]:
    return {"BENCH_DSN": dsn, MODE_ENV: "like-worker"}


def preload() -> None:
    pass


def run_worker(concurrency: int, batch_size: int | None, latency: bool) -> int:
    mode = os.environ.get(MODE_ENV, "like-worker")
    if mode not in MODES:
        raise SystemExit(f"{MODE_ENV}={mode!r}: not one of {', '.join(MODES)}")
    asyncio.run(Ceiling(os.environ["BENCH_DSN"], concurrency, durable=mode == "durable").run())
    return 0


# --- the worker process ------------------------------------------------------------------------------
class Ceiling:
    def __init__(self, dsn: str, concurrency: int, *, durable: bool = False) -> None:
        self.dsn = dsn
        self.concurrency = concurrency
        self.durable = durable
        self.running = 0
        self.ready: collections.deque[Any] = collections.deque()
        self.avg_job_ms = math.inf  # no claiming ahead until a job's duration is known (as the daemon)
        self.stopping = False
        self.wake = asyncio.Event()
        self.slot_freed = asyncio.Event()
        self.flush_needed = asyncio.Event()
        self.done: list[tuple[int, int, datetime, datetime]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.slot_freed.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        claim_settings = {} if self.durable else {"synchronous_commit": "off"}
        claim_conn = await asyncpg.connect(self.dsn, server_settings=claim_settings)
        ack_conn = await asyncpg.connect(self.dsn)
        listen_conn = await asyncpg.connect(self.dsn)
        await listen_conn.add_listener(CHANNEL, lambda *_: self.wake.set())
        flusher = asyncio.create_task(self._flush_loop(ack_conn))
        try:
            await self._fetch_loop(claim_conn)
            self.ready.clear()  # held, never started: their leases run out (no hand-back in a floor)
            while self.running:
                self.slot_freed.clear()
                await self.slot_freed.wait()
        finally:
            flusher.cancel()
            await self._flush(ack_conn)
            for c in (claim_conn, ack_conn, listen_conn):
                await c.close()

    def _ahead(self) -> int:
        return 0 if self.durable else ahead_batches(self.avg_job_ms, AHEAD_BELOW_MS, slots=self.concurrency)

    def _room(self) -> int:
        return self.concurrency * (1 + self._ahead()) - self.running - len(self.ready)

    async def _gather_slots(self) -> None:
        """Wait (at most FLUSH_S) until a batch fits: `concurrency` jobs while claiming ahead, else half the
        slots, so that one claim takes many rows rather than many claims a few."""
        target = self.concurrency if self._ahead() else max(1, self.concurrency // 2)
        deadline = time.monotonic() + FLUSH_S
        while self._room() < target and not self.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.slot_freed.wait(), remaining)

    async def _fetch_loop(self, conn: asyncpg.Connection) -> None:
        while not self.stopping:
            room = self._room()
            if room <= 0:
                self.slot_freed.clear()
                await self.slot_freed.wait()
                continue
            if self.running or self.ready:
                await self._gather_slots()
                room = self._room()
            self.wake.clear()
            rows = await conn.fetch(CLAIM, room)
            self.ready.extend(rows)
            self._fill_slots()
            if len(rows) < room:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), POLL_S)

    def _fill_slots(self) -> None:
        while self.ready and self.running < self.concurrency and not self.stopping:
            self.running += 1
            task = asyncio.create_task(self._run_job(self.ready.popleft()))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run_job(self, row: Any) -> None:
        t0 = time.monotonic()
        started = datetime.now(UTC)
        try:
            payload = json.loads(row["payload"])
            if "t" in payload:
                latency.record(payload["t"])
            self.done.append((row["id"], row["attempts"], started, datetime.now(UTC)))
            self.flush_needed.set()
        finally:
            self.running -= 1
            ms = (time.monotonic() - t0) * 1000
            self.avg_job_ms = ms if math.isinf(self.avg_job_ms) else 0.8 * self.avg_job_ms + 0.2 * ms
            self._fill_slots()
            self.slot_freed.set()

    async def _flush_loop(self, conn: asyncpg.Connection) -> None:
        while True:
            await self.flush_needed.wait()
            await asyncio.sleep(FLUSH_S)
            self.flush_needed.clear()
            await self._flush(conn)

    async def _flush(self, conn: asyncpg.Connection) -> None:
        batch, self.done = self.done, []
        if batch:
            await conn.execute(COMPLETE, *(list(col) for col in zip(*batch, strict=True)))
