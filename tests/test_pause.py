"""Pause / resume: honoured by a running daemon's automatic processing, not by explicit claims; the claim stays
on its index."""

from __future__ import annotations

import json

import anyio
import asyncpg
import pytest

from tests.support.claim_plans import claim_plans, nodes, sorts_over_job_queue
from tests.support.daemon import make_settings, running_daemon, wait_for
from tests.support.rows import status_of
from worker import operations, queue
from worker.builtin import default_registry
from worker.cli.main import main
from worker.errors import InvalidInput


async def test_a_paused_task_type_stays_pending_while_others_run_and_runs_after_resume(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url)
    async with running_daemon(settings, default_registry(settings)):
        await operations.pause(conn, "noop", by="test")
        paused_job = (await queue.enqueue(conn, queue.NewJob("noop"))).id
        other = (await queue.enqueue(conn, queue.NewJob("cleanup"))).id

        async def other_done() -> bool:
            return await status_of(conn, other) == "succeeded"

        await wait_for(other_done)
        assert await status_of(conn, paused_job) == "pending"
        assert await operations.resume(conn, "noop") is True

        async def paused_done() -> bool:
            return await status_of(conn, paused_job) == "succeeded"

        await wait_for(paused_done)


async def test_the_global_pause_stops_every_task_type(database_url: str, conn: asyncpg.Connection) -> None:
    settings = make_settings(database_url)
    async with running_daemon(settings, default_registry(settings)) as daemon:
        await operations.pause(conn)
        assert await operations.paused_task_types(conn) == ["*"]
        ids = [(await queue.enqueue(conn, queue.NewJob(t))).id for t in ("noop", "cleanup")]
        daemon.wake()
        await anyio.sleep(0.3)  # the NOTIFY and the wake-up gave the daemon its chance to (wrongly) claim
        assert [await status_of(conn, i) for i in ids] == ["pending", "pending"]
        await operations.resume(conn)

        async def all_done() -> bool:
            return [await status_of(conn, i) for i in ids] == ["succeeded", "succeeded"]

        await wait_for(all_done)


async def test_run_now_runs_a_paused_job_while_the_daemon_leaves_it_alone(
    database_url: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    settings = make_settings(database_url)
    async with running_daemon(settings, default_registry(settings)):
        await operations.pause(conn, "noop")
        job = (await queue.enqueue(conn, queue.NewJob("noop"))).id
        code = await anyio.to_thread.run_sync(main, ["jobs", "run-now", str(job), "--json"])
        text = capsys.readouterr().out  # the in-process daemon's log lines come first
        out = json.loads(text[text.index("{\n"):])
        assert code == 0 and out["status"] == "succeeded"
        assert await status_of(conn, job) == "succeeded"


async def test_explicit_claims_ignore_the_pause_and_the_automatic_claim_honours_it(conn: asyncpg.Connection) -> None:
    await operations.pause(conn, "noop")
    job = (await queue.enqueue(conn, queue.NewJob("noop"))).id
    assert await queue.claim(conn, worker_id="w", task_types=["noop"], limit=5, lease_s=30) == []
    jobs, _ = await queue.recover_and_claim(conn, worker_id="w", task_types=["noop"], limit=5, lease_s=30)
    assert jobs == []
    claimed = await queue.claim_ids(conn, [job], worker_id="w", lease_s=30)
    assert [j.id for j in claimed] == [job]


async def test_pause_rejects_a_malformed_task_type_and_resume_reports_an_absent_flag(conn: asyncpg.Connection) -> None:
    with pytest.raises(InvalidInput):
        await operations.pause(conn, "Not A Type")
    assert await operations.resume(conn, "noop") is False
    assert await operations.paused(conn) == []


async def test_the_claim_stays_on_the_claim_index_with_pause_flags(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO job_queue (task_type, status, attempts, finished_at) "
        "SELECT 'noop', CASE WHEN g % 10 = 0 THEN 'pending' ELSE 'succeeded' END, 0, now() "
        "FROM generate_series(1, 20000) AS g"
    )
    await operations.pause(conn, "cleanup")
    await conn.execute("ANALYZE job_queue")
    # What the claim picks (job_queue_pick's query, run nested) is read in order from the index; the one sort is
    # of the claimed rows, on top.
    plans, claimed = await claim_plans(conn, limit=10)
    assert claimed == 10
    scans = [n.get("Index Name") for p in plans for n in nodes(p) if n.get("Relation Name") == "job_queue"]
    assert "job_queue_claim_idx" in scans, plans
    assert [s for p in plans for s in sorts_over_job_queue(p)] == [], plans
