"""The daemon's own statements never deadlock with each other, and a deadlock or serialization failure in them is
retried and logged, never the end of the process."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import anyio
import asyncpg
from structlog.testing import capture_logs

from tests.support.daemon import make_settings, running_daemon, wait_for
from worker import db, queue
from worker.builtin import default_registry
from worker.queue import Finished, Job, NewJob
from worker.runtime.leases import LeaseKeeper, RunningJob

WORKER = "w"
ROUNDS = 25
BATCH = 60


def _finished(job: Job) -> Finished:
    now = datetime.now(UTC)
    return Finished(job.id, job.task_type, job.attempt, "succeeded", "succeeded", job.started_at, now, 1)


async def test_renewal_finish_recovery_and_claim_on_overlapping_rows_never_deadlock_nor_lose_a_lease(
    database_url: str, conn: asyncpg.Connection
) -> None:
    conns = [await db.connect(database_url) for _ in range(5)]
    rng = random.Random(25)
    try:
        await queue.enqueue_many(conn, [NewJob("noop") for _ in range(ROUNDS * BATCH * 2)])
        for _ in range(ROUNDS):
            jobs = await queue.claim(conn, worker_id=WORKER, task_types=["noop"], limit=BATCH, lease_s=30)
            assert len(jobs) == BATCH
            ids = [j.id for j in jobs]
            # Another worker's expired leases among them, for the recovery to take.
            await conn.execute(
                "UPDATE job_queue SET status = 'running', attempts = 1, locked_by = 'gone', started_at = now(),"
                " locked_until = now() - interval '1 s'"
                " WHERE id IN (SELECT id FROM job_queue WHERE status = 'pending' LIMIT 10)"
            )
            batch = [_finished(j) for j in jobs]
            rng.shuffle(batch)

            async def renew(c: asyncpg.Connection, ids: list[uuid.UUID]) -> set[object]:
                held: set[object] = set()
                for _ in range(3):
                    order = ids[:]
                    rng.shuffle(order)
                    held |= await queue.heartbeat(c, WORKER, order, 30)
                return held

            async def finish(c: asyncpg.Connection, part: list[Finished]) -> set[object]:
                return set(await queue.finish(c, WORKER, part))

            async def recover_and_claim(c: asyncpg.Connection) -> None:
                await queue.recover_and_claim(c, worker_id="other", task_types=["noop"], limit=20, lease_s=30)

            half = len(batch) // 2
            held_a, held_b, acked_a, acked_b, _ = await asyncio.gather(
                renew(conns[0], ids), renew(conns[1], ids),
                finish(conns[2], batch[:half]), finish(conns[3], batch[half:]),
                recover_and_claim(conns[4]),
            )
            assert acked_a | acked_b == set(ids)  # no finished attempt refused: no lease was lost
            assert held_a <= set(ids) and held_b <= set(ids)
        statuses = await conn.fetch("SELECT status, count(*) FROM job_queue WHERE locked_by = $1 GROUP BY 1", WORKER)
        assert statuses == []
    finally:
        for c in conns:
            await c.close()


_INJECT = """
CREATE SEQUENCE injected_faults;
CREATE FUNCTION inject_deadlock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('injected_faults') <= 6 THEN
        RAISE EXCEPTION 'deadlock detected (injected by the test)' USING ERRCODE = 'deadlock_detected';
    END IF;
    RETURN NEW;
END $$;
-- Lease renewals (running stays running) and finishes (running -> succeeded): the statements that ended the
-- daemon under load.
CREATE TRIGGER inject_deadlock BEFORE UPDATE ON job_queue FOR EACH ROW
    WHEN (OLD.status = 'running') EXECUTE FUNCTION inject_deadlock();
"""


async def test_a_deadlock_in_lease_renewal_or_finish_is_retried_and_logged_and_the_daemon_keeps_running(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await conn.execute(_INJECT)
    settings = make_settings(database_url, lease_s=3.0)
    with capture_logs() as logs:
        async with running_daemon(settings, default_registry()) as daemon:
            ids = await queue.enqueue_many(conn, [NewJob("noop", {"sleep_s": 1.5}) for _ in range(4)])

            async def all_succeeded() -> bool:
                n = await conn.fetchval(
                    "SELECT count(*) FROM job_queue WHERE id = ANY ($1::uuid[]) AND status = 'succeeded'", ids
                )
                return int(n) == len(ids)

            await wait_for(all_succeeded, timeout_s=20)
            await anyio.sleep(0.1)
            assert daemon.exit_code == 0 and all(daemon.alive.values())
    assert int(await conn.fetchval("SELECT last_value FROM injected_faults")) > 6  # every injected fault was hit
    events = {e["event"] for e in logs}
    assert "daemon.loop_crashed" not in events and "job.lease_lost" not in events
    retried = [e for e in logs if "DeadlockDetectedError" in str(e.get("error", ""))]
    assert {e["event"] for e in retried} & {"heartbeat.database_unavailable", "flush.database_unavailable"}
    assert all(e["log_level"] == "warning" for e in retried)



async def test_a_job_that_finished_while_its_lease_was_being_renewed_is_not_reported_lost(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await queue.enqueue_many(conn, [NewJob("noop") for _ in range(2)])
    done, running = await queue.claim(conn, worker_id=WORKER, task_types=["noop"], limit=2, lease_s=30)
    held_calls: list[int] = []

    def held() -> list[RunningJob]:
        # The renewal reads the held jobs, then `done` finishes (its row released) before the renewal runs.
        held_calls.append(1)
        return [RunningJob(done), RunningJob(running)] if len(held_calls) == 1 else [RunningJob(running)]

    await queue.finish(conn, WORKER, [_finished(done)])
    lost: list[tuple[object, str]] = []
    keeper = LeaseKeeper(pool, WORKER, lease_s=30, renew_every_s=10, held=held, also_renew=list,
                         lose=lambda rj, why: lost.append((rj.job.id, why)))
    await keeper.renew_once()
    assert lost == []
