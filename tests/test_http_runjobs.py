"""POST /api/jobs/run (the seed's contract) over a real HTTP connection to a running daemon."""

from __future__ import annotations

import asyncpg

from tests.support.daemon import wait_for
from tests.support.http import POLL_ONLY, auth, enqueue_due_soon, http_daemon, job_count, until_due
from worker import queue

_enqueue = enqueue_due_soon


async def test_run_processes_due_jobs_and_answers_the_seed_report(
    database_url: str, conn: asyncpg.Connection
) -> None:
    ok = await _enqueue(conn)
    retry = await _enqueue(conn, {"fail": "flaky upstream"}, max_attempts=3)
    dead = await _enqueue(conn, {"fail": "bad data", "permanent": True})
    # Poll-only with a 30 s poll: the daemon leaves these jobs to the HTTP call (the seed's cron mode).
    async with http_daemon(database_url, **POLL_ONLY) as (_daemon, client):
        await until_due()
        r = await client.post("/api/jobs/run", headers=auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"status", "processed", "succeeded", "failed", "results"}
    assert (body["status"], body["processed"], body["succeeded"], body["failed"]) == ("ok", 3, 1, 2)
    by_id = {item["id"]: item for item in body["results"]}
    assert set(by_id) == {str(ok), str(retry), str(dead)}
    for item in body["results"]:
        assert set(item) == {"id", "task_type", "status", "attempts", "duration_ms", "error"}
        assert item["task_type"] == "noop"
        assert item["attempts"] == 1
        assert isinstance(item["duration_ms"], int)
    assert by_id[str(ok)]["status"] == "succeeded" and by_id[str(ok)]["error"] is None
    assert by_id[str(retry)]["status"] == "pending"
    assert by_id[str(retry)]["error"] == "RuntimeError: flaky upstream"
    assert by_id[str(dead)]["status"] == "failed"
    assert by_id[str(dead)]["error"] == "PermanentJobError: bad data"
    rows = {r["id"]: r for r in await conn.fetch("SELECT id, status, attempts FROM job_queue")}
    assert [rows[i]["status"] for i in (ok, retry, dead)] == ["succeeded", "pending", "failed"]
    ledger = await conn.fetch("SELECT DISTINCT worker_id FROM job_runs")
    assert [r["worker_id"] for r in ledger] == ["test-worker/http"]


async def test_run_with_nothing_due_reports_zero(database_url: str) -> None:
    async with http_daemon(database_url, **POLL_ONLY) as (_daemon, client):
        r = await client.post("/api/jobs/run", headers=auth(), json={"source": "cron"})
    assert r.json() == {"status": "ok", "processed": 0, "succeeded": 0, "failed": 0, "results": []}


async def test_run_limit_comes_from_query_or_body_and_is_capped(
    database_url: str, conn: asyncpg.Connection
) -> None:
    for _ in range(8):
        await _enqueue(conn)
    async with http_daemon(database_url, **POLL_ONLY, run_limit_max=3) as (_daemon, client):
        await until_due()
        by_query = await client.post("/api/jobs/run?limit=2", headers=auth())
        by_body = await client.post("/api/jobs/run", headers=auth(), json={"limit": 1})
        capped = await client.post("/api/jobs/run", headers=auth(), json={"limit": 1000})
    assert [r.json()["processed"] for r in (by_query, by_body, capped)] == [2, 1, 3]
    assert await conn.fetchval("SELECT count(*) FROM job_queue WHERE status = 'pending'") == 2


async def test_run_with_ids_runs_exactly_those_pending_jobs(database_url: str, conn: asyncpg.Connection) -> None:
    a, b, c = [await _enqueue(conn), await _enqueue(conn), await _enqueue(conn)]
    async with http_daemon(database_url, **POLL_ONLY) as (_daemon, client):
        await until_due()
        r = await client.post("/api/jobs/run", headers=auth(), json={"ids": [str(a), str(c)]})
    assert sorted(item["id"] for item in r.json()["results"]) == sorted([str(a), str(c)])
    assert await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", b) == "pending"


async def test_run_never_runs_a_job_the_daemon_is_running(database_url: str, conn: asyncpg.Connection) -> None:
    async with http_daemon(database_url) as (_daemon, client):
        job = (await queue.enqueue(conn, queue.NewJob("noop", {"sleep_s": 1.0}))).id

        async def claimed() -> bool:
            return await conn.fetchval("SELECT locked_by FROM job_queue WHERE id = $1", job) == "test-worker"

        await wait_for(claimed)
        r = await client.post("/api/jobs/run", headers=auth())
        assert r.json()["processed"] == 0

        async def done() -> bool:
            return await conn.fetchval("SELECT status FROM job_queue WHERE id = $1", job) == "succeeded"

        await wait_for(done)
    runs = await conn.fetch("SELECT worker_id, outcome FROM job_runs WHERE job_id = $1", job)
    assert [(r["worker_id"], r["outcome"]) for r in runs] == [("test-worker", "succeeded")]


async def test_run_hands_unfinished_jobs_back_when_the_budget_runs_out(
    database_url: str, conn: asyncpg.Connection
) -> None:
    job = await _enqueue(conn, {"sleep_s": 30})
    async with http_daemon(database_url, **POLL_ONLY, run_budget_s=0.3) as (_daemon, client):
        await until_due()
        r = await client.post("/api/jobs/run", headers=auth())
    body = r.json()
    assert (body["processed"], body["succeeded"], body["failed"]) == (1, 0, 1)
    item = body["results"][0]
    assert (item["status"], item["attempts"]) == ("pending", 0)
    assert "time budget" in item["error"]
    row = await conn.fetchrow("SELECT status, attempts, locked_by FROM job_queue WHERE id = $1", job)
    assert (row["status"], row["attempts"], row["locked_by"]) == ("pending", 0, None)


async def test_run_rejects_bad_input_with_a_clear_4xx_and_changes_nothing(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await _enqueue(conn)
    cases = [
        ("/api/jobs/run?limit=abc", None, 422, "limit must be a positive integer"),
        ("/api/jobs/run?limit=0", None, 422, "limit must be a positive integer"),
        ("/api/jobs/run", b'{"limit": 0}', 422, "limit"),
        ("/api/jobs/run", b'{"limit": "many"}', 422, "limit"),
        ("/api/jobs/run", b'{"ids": ["not-a-uuid"]}', 422, "ids"),
        ("/api/jobs/run", b"{limit: 1}", 400, "malformed JSON"),
        ("/api/jobs/run", b"7", 422, "JSON object"),
    ]
    async with http_daemon(database_url, **POLL_ONLY) as (_daemon, client):
        await until_due()
        for path, raw, status, needle in cases:
            r = await client.post(path, content=raw, headers=auth())
            assert r.status_code == status, (path, raw, r.text)
            assert needle in r.json()["error"], (path, raw, r.text)
        too_big = await client.post("/api/jobs/run", content=b"{" + b" " * 70000 + b"}", headers=auth())
        assert too_big.status_code == 413
        assert (await client.post("/api/jobs/run")).status_code == 401
        assert (await client.get("/api/jobs/run", headers=auth())).status_code == 405
    assert await job_count(conn) == 1
    assert await conn.fetchval("SELECT status FROM job_queue") == "pending"
    assert await conn.fetchval("SELECT count(*) FROM job_runs") == 0
