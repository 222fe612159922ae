"""The JSON admin API over real HTTP against a running daemon and a real database: every endpoint, and every
bad input answered with a 4xx that names the problem and changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.support.admin import BEARER, admin_daemon, enqueue, status_of, until_status
from worker import operations


async def _get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    r = await client.get(f"/admin/api{path}", params=params, headers=BEARER)
    assert r.status_code == 200, r.text
    return r.json()


async def _post(client: httpx.AsyncClient, path: str, body: Any = None, status: int = 200) -> Any:
    r = await client.post(f"/admin/api{path}", json=body if body is not None else {}, headers=BEARER)
    assert r.status_code == status, r.text
    return r.json()


async def test_overview_counts_throughput_failure_rate_paused_schedules_listener(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await conn.execute("INSERT INTO job_queue_limits (task_type, max_running, key_field) VALUES ('flaky', 3, 'k')")
    async with admin_daemon(database_url, schedules_enabled=True) as (daemon, client):
        ok = [await enqueue(conn, "noop") for _ in range(2)]
        bad = await enqueue(conn, "boom", {"error": "exploded"}, max_attempts=1)
        for job_id in ok:
            await until_status(conn, job_id, "succeeded")
        await until_status(conn, bad, "failed")
        await operations.pause(conn, "flaky", by="test")
        await enqueue(conn, "flaky", run_at=datetime.now(UTC) - timedelta(minutes=10))  # due 10 minutes ago
        o = await _get(client, "/overview")
    assert o["totals"] == {"pending": 1, "running": 0, "succeeded": 2, "failed": 1, "cancelled": 0}
    by_type = {t["task_type"]: t for t in o["by_task_type"]}
    assert by_type["noop"]["succeeded"] == 2 and by_type["boom"]["failed"] == 1 and by_type["flaky"]["pending"] == 1
    assert (by_type["flaky"]["concurrency_limit"], by_type["flaky"]["concurrency_key"]) == (3, "k")
    assert by_type["flaky"]["slots_in_use"] == 0 and by_type["noop"]["concurrency_limit"] is None
    assert o["last_hour"]["succeeded"] == 2 and o["last_hour"]["attempts"] == 3
    assert o["last_hour"]["failure_rate"] == round(1 / 3, 4)
    assert o["oldest_due_pending"]["count"] == 1 and 600 <= o["oldest_due_pending"]["age_s"] < 900
    assert [p["task_type"] for p in o["paused"]] == ["flaky"] and o["globally_paused"] is False
    schedules = {s["name"]: s for s in o["schedules"]}
    assert schedules["cleanup"]["cron"] == "15 3 * * *" and schedules["cleanup"]["enabled"] is True
    next_run = datetime.fromisoformat(schedules["cleanup"]["next_run"])
    assert (next_run.hour, next_run.minute) == (3, 15) and next_run > datetime.now(UTC)
    assert o["listener"]["enabled"] is True and o["listener"]["connected"] is True
    assert set(o["task_types"]) >= {"noop", "flaky", "boom"}
    assert o["worker"]["worker_id"] == daemon.worker_id


async def test_job_list_filters_by_status_type_time_and_error_text(database_url: str, conn: asyncpg.Connection) -> None:
    async with admin_daemon(database_url) as (_, client):
        await operations.pause(conn)  # nothing runs: the states below stay as set
        ids = [await enqueue(conn, "noop" if i % 2 else "flaky") for i in range(6)]
        await conn.execute(
            "UPDATE job_queue SET status = 'failed', finished_at = now(), last_error = $2 WHERE id = $1",
            ids[0], "TimeoutError: 100% of competitor c_7 timed out")
        await conn.execute(
            "UPDATE job_queue SET status = 'failed', finished_at = now(), last_error = 'other' WHERE id = $1", ids[1])
        await conn.execute("UPDATE job_queue SET created_at = now() - interval '3 hours' WHERE id = $1", ids[5])

        failed = await _get(client, "/jobs", status="failed")
        assert {j["id"] for j in failed["jobs"]} == {str(ids[0]), str(ids[1])}
        assert failed["filter"]["status"] == "failed"
        flaky = await _get(client, "/jobs", task_type="flaky")
        assert {j["id"] for j in flaky["jobs"]} == {str(i) for i in ids[0::2]}
        # The text is matched literally: % and _ are not wildcards.
        hit = await _get(client, "/jobs", error="100% of competitor c_7")
        assert [j["id"] for j in hit["jobs"]] == [str(ids[0])]
        assert (await _get(client, "/jobs", error="100%_of"))["jobs"] == []
        recent = await _get(client, "/jobs", since="1h")
        assert str(ids[5]) not in {j["id"] for j in recent["jobs"]} and len(recent["jobs"]) == 5
        old = await _get(client, "/jobs", until="2h")
        assert [j["id"] for j in old["jobs"]] == [str(ids[5])]


async def test_job_list_pages_by_keyset_newest_first(database_url: str, conn: asyncpg.Connection) -> None:
    async with admin_daemon(database_url) as (_, client):
        await operations.pause(conn)
        base = datetime.now(UTC) - timedelta(minutes=10)
        ids = [await enqueue(conn, "noop") for _ in range(7)]
        for n, job_id in enumerate(ids):
            created = base + timedelta(seconds=n)
            await conn.execute("UPDATE job_queue SET created_at = $2 WHERE id = $1", job_id, created)
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = await _get(client, "/jobs", **params)
            seen += [j["id"] for j in page["jobs"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == [str(i) for i in reversed(ids)]
    assert pages == 3


async def test_job_list_rejects_bad_filters(database_url: str, conn: asyncpg.Connection) -> None:
    async with admin_daemon(database_url) as (_, client):
        cases = {
            "status=bogus": "status must be one of",
            "task_type=Bad!": "task type must be",
            "since=yesterday": "not a time or duration",
            "since=2024-01-01T00:00:00": "needs a zone",
            "since=1h&until=2h": "since must be before until",
            "limit=0": "limit must be an integer from 1 to 200",
            "limit=abc": "limit must be an integer",
            "limit=201": "limit must be an integer",
            "cursor=garbage!": "cursor is not one this API returned",
            "colour=red": "unknown parameter(s): colour",
            "error=" + "x" * 201: "at most 200 characters",
        }
        for query, message in cases.items():
            r = await client.get(f"/admin/api/jobs?{query}", headers=BEARER)
            assert r.status_code == 422, query
            assert message in r.json()["error"], (query, r.json())


async def test_job_detail_shows_payload_result_error_and_every_attempt(
    database_url: str, conn: asyncpg.Connection
) -> None:
    async with admin_daemon(database_url) as (_, client):
        job_id = await enqueue(conn, "flaky", {"league": "north"}, max_attempts=3)
        await until_status(conn, job_id, "succeeded")
        job = await _get(client, f"/jobs/{job_id}")
        assert job["payload"] == {"league": "north"}
        assert job["result"]["errors"] == [{"competitor_id": "c-42", "error": "player not found"}]
        assert [(r["attempt"], r["outcome"]) for r in job["runs"]] == [(1, "retry"), (2, "succeeded")]
        assert "upstream 503" in job["runs"][0]["error"]
        assert job["runs"][0]["worker_id"] == "test-worker" and job["runs"][1]["duration_ms"] >= 0
        assert job["status"] == "succeeded" and job["attempts"] == 2

        r = await client.get("/admin/api/jobs/not-a-uuid", headers=BEARER)
        assert r.status_code == 422 and "not a job id" in r.json()["error"]
        unknown = uuid.uuid4()
        r = await client.get(f"/admin/api/jobs/{unknown}", headers=BEARER)
        assert r.status_code == 404 and str(unknown) in r.json()["error"]


async def test_retry_cancel_archive_one_job_and_refuse_forbidden_states(
    database_url: str, conn: asyncpg.Connection
) -> None:
    async with admin_daemon(database_url) as (_, client):
        failed = await enqueue(conn, "boom", {"error": "nope"}, max_attempts=1)
        await until_status(conn, failed, "failed")
        await operations.pause(conn)  # from here on nothing runs by itself
        out = await _post(client, f"/jobs/{failed}/retry")
        assert out == {"action": "retry", "retried": [str(failed)], "count": 1}
        assert await status_of(conn, failed) == "pending"

        r = await _post(client, f"/jobs/{failed}/archive", status=409)
        assert "it is pending" in r["error"]
        out = await _post(client, f"/jobs/{failed}/cancel", {"reason": "not today"})
        assert out["cancelled"] == [str(failed)] and await status_of(conn, failed) == "cancelled"
        r = await _post(client, f"/jobs/{failed}/cancel", status=409)
        assert "it is cancelled" in r["error"]
        await _post(client, f"/jobs/{failed}/cancel", {"reason": 5}, status=422)
        await _post(client, f"/jobs/{failed}/retry", {"unexpected": 1}, status=422)

        out = await _post(client, f"/jobs/{failed}/archive")
        assert out["count"] == 1 and out["archived_runs"] == 1  # its one failed attempt
        assert await status_of(conn, failed) is None
        assert await conn.fetchval("SELECT status FROM job_queue_archive WHERE id = $1", failed) == "cancelled"
        await _post(client, f"/jobs/{uuid.uuid4()}/retry", status=404)
        await _post(client, "/jobs/xyz/retry", status=422)
        r = await client.post(f"/admin/api/jobs/{failed}/retry", content=b"{nope", headers=BEARER)
        assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
        r = await client.get(f"/admin/api/jobs/{failed}/retry", headers=BEARER)
        assert r.status_code == 405


async def test_run_now_runs_a_pending_job_while_paused(database_url: str, conn: asyncpg.Connection) -> None:
    async with admin_daemon(database_url) as (_, client):
        await operations.pause(conn)
        job_id = await enqueue(conn, "noop")
        out = await _post(client, f"/jobs/{job_id}/run-now")
        assert out["action"] == "run-now" and out["status"] == "succeeded" and out["id"] == str(job_id)
        assert await status_of(conn, job_id) == "succeeded"
        r = await _post(client, f"/jobs/{job_id}/run-now", status=409)
        assert "it is succeeded" in r["error"]


async def test_bulk_actions_by_ids_and_by_filter(database_url: str, conn: asyncpg.Connection) -> None:
    async with admin_daemon(database_url) as (_, client):
        boom = [await enqueue(conn, "boom", {"error": f"e{i}"}, max_attempts=1) for i in range(3)]
        other = await enqueue(conn, "flaky", max_attempts=1)
        for job_id in boom:
            await until_status(conn, job_id, "failed")
        await until_status(conn, other, "failed")
        await operations.pause(conn)

        before = await conn.fetch("SELECT id, status FROM job_queue ORDER BY id")
        await _post(client, "/jobs/retry", {"filter": {"task_type": "boom"}}, status=422)  # no status
        await _post(client, "/jobs/retry", {"filter": {"status": "succeeded"}}, status=422)
        await _post(client, "/jobs/retry", {"ids": [str(boom[0])], "filter": {"status": "failed"}}, status=422)
        await _post(client, "/jobs/retry", {"ids": []}, status=422)
        await _post(client, "/jobs/retry", {"ids": [str(boom[0]), str(uuid.uuid4())]}, status=404)
        await _post(client, "/jobs/archive", {"filter": {"status": "failed", "since": "soon"}}, status=422)
        assert await conn.fetch("SELECT id, status FROM job_queue ORDER BY id") == before

        out = await _post(client, "/jobs/retry", {"filter": {"status": "failed", "task_type": "boom"}})
        assert out["count"] == 3 and out["matched"] == 3 and out["more"] is False
        assert sorted(out["retried"]) == sorted(str(i) for i in boom)
        assert await status_of(conn, other) == "failed"
        out = await _post(client, "/jobs/cancel", {"ids": [str(i) for i in boom[:2]], "reason": "bulk"})
        assert out["count"] == 2
        out = await _post(client, "/jobs/archive", {"filter": {"status": "cancelled"}})
        assert out["count"] == 2
        assert await conn.fetchval("SELECT count(*) FROM job_queue_archive") == 2
        out = await _post(client, "/jobs/archive", {"filter": {"status": "cancelled"}})
        assert out == {"action": "archive", "count": 0, "matched": 0, "more": False}


async def test_pause_and_resume_per_task_type_and_globally(database_url: str, conn: asyncpg.Connection) -> None:
    async with admin_daemon(database_url) as (_, client):
        out = await _post(client, "/pause", {"task_type": "noop", "reason": "maintenance"})
        assert out["paused"]["task_type"] == "noop" and out["paused"]["reason"] == "maintenance"
        assert out["paused"]["paused_by"].startswith("admin:bearer@")
        held = await enqueue(conn, "noop")
        await _post(client, "/pause", {})  # no task type: every task type
        assert {r["task_type"] for r in await conn.fetch("SELECT task_type FROM job_queue_pause")} == {"noop", "*"}

        for body, status in (({"task_type": "nope"}, 422), ({"task_type": 3}, 422), ({"task_type": "Bad!"}, 422),
                             ({"colour": "red"}, 422), ([1], 422)):
            await _post(client, "/pause", body, status=status)
        r = await client.post("/admin/api/pause", content=b"[", headers=BEARER)
        assert r.status_code == 400

        assert (await _post(client, "/resume", {"task_type": "*"}))["resumed"] is True
        assert (await _post(client, "/resume", {"task_type": "*"}))["resumed"] is False
        assert await status_of(conn, held) == "pending"
        assert (await _post(client, "/resume", {"task_type": "noop"}))["resumed"] is True
        await until_status(conn, held, "succeeded")
