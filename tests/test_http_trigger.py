"""/trigger over a real HTTP connection: auth, wake-up, enqueue, and every bad-input case (which changes nothing)."""

from __future__ import annotations

import json
import random
import uuid

import asyncpg
import structlog

from tests.support.daemon import make_settings, wait_for
from tests.support.http import (
    POLL_ONLY,
    PREVIOUS,
    SECRET,
    auth,
    enqueue_due_soon,
    http_daemon,
    job_count,
    until_due,
)
from tests.support.rows import status_of
from worker import db, queue
from worker.builtin import default_registry
from worker.http.app import MAX_BODY_BYTES
from worker.service import build_daemon


async def test_trigger_wakes_the_fetch_loop_at_once_and_answers_202_with_queue_depth(
    database_url: str, conn: asyncpg.Connection
) -> None:
    # Poll-only with a long poll: without the trigger the job would wait far longer than wait_for's 10 s.
    job_id = await enqueue_due_soon(conn)
    async with http_daemon(database_url, **POLL_ONLY) as (_daemon, client):
        await until_due()
        r = await client.post("/trigger", headers=auth())
        assert r.status_code == 202
        body = r.json()
        assert body["status"] == "accepted"
        assert body["queue_depth"] in (0, 1)
        assert "job_id" not in body

        async def done() -> bool:
            return await status_of(conn, job_id) == "succeeded"

        await wait_for(done)


async def test_trigger_with_a_body_enqueues_the_job_then_runs_it(
    database_url: str, conn: asyncpg.Connection
) -> None:
    async with http_daemon(database_url, **POLL_ONLY) as (_daemon, client):
        r = await client.post(
            "/trigger", headers=auth(),
            json={"task_type": "noop", "payload": {"sleep_s": 0.01}, "dedupe_key": "hourly-2024"},
        )
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["created"] is True
        job_id = body["job_id"]
        row = await conn.fetchrow("SELECT task_type, payload, dedupe_key FROM job_queue WHERE id = $1",
                                  uuid.UUID(job_id))
        assert (row["task_type"], row["payload"], row["dedupe_key"]) == ("noop", {"sleep_s": 0.01}, "hourly-2024")

        async def done() -> bool:
            return await status_of(conn, job_id) == "succeeded"

        await wait_for(done)


async def test_trigger_with_a_taken_dedupe_key_returns_the_existing_job(
    database_url: str, conn: asyncpg.Connection
) -> None:
    async with http_daemon(database_url, **POLL_ONLY) as (daemon, client):
        existing = await queue.enqueue(
            conn, queue.NewJob("noop", run_at=None, dedupe_key="once", payload={"sleep_s": 3})
        )
        r = await client.post("/trigger", headers=auth(), json={"task_type": "noop", "dedupe_key": "once"})
        daemon.stop()
    assert r.status_code == 202
    assert r.json()["job_id"] == str(existing.id)
    assert r.json()["created"] is False


async def test_trigger_accepts_the_previous_secret_during_rotation(database_url: str) -> None:
    async with http_daemon(database_url, **POLL_ONLY, runner_secret_previous=PREVIOUS) as (_d, client):
        current = await client.post("/trigger", headers=auth(SECRET))
        previous = await client.post("/trigger", headers=auth(PREVIOUS))
    assert (current.status_code, previous.status_code) == (202, 202)


async def test_trigger_without_or_with_a_wrong_token_is_401_with_no_detail(
    database_url: str, conn: asyncpg.Connection
) -> None:
    body = {"task_type": "noop"}
    async with http_daemon(database_url, **POLL_ONLY, runner_secret_previous=PREVIOUS) as (_d, client):
        answers = [
            await client.post("/trigger", json=body),
            await client.post("/trigger", json=body, headers=auth(SECRET + "x")),
            await client.post("/trigger", json=body, headers=auth(SECRET[:-1])),
            await client.post("/trigger", json=body, headers={"Authorization": SECRET}),
            await client.post("/trigger", json=body, headers={"Authorization": f"Basic {SECRET}"}),
            await client.post("/trigger", json=body, headers={"Authorization": "Bearer"}),
        ]
    for r in answers:
        assert r.status_code == 401
        assert r.json() == {"error": "unauthorized"}
        assert r.headers["www-authenticate"] == "Bearer"
    assert await job_count(conn) == 0


async def test_without_a_runner_secret_trigger_and_run_answer_503_and_startup_warns(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, http_enabled=True, http_port=0)
    pool = await db.create_pool(database_url, max_size=2)
    try:
        with structlog.testing.capture_logs() as logs:
            build_daemon(settings, default_registry(settings), pool)
    finally:
        await pool.close()
    assert any(e["event"] == "http.no_runner_secret" and e["log_level"] == "warning" for e in logs)

    async with http_daemon(database_url, **POLL_ONLY, runner_secret=None) as (_d, client):
        trigger = await client.post("/trigger", json={"task_type": "noop"}, headers=auth())
        run = await client.post("/api/jobs/run", headers=auth())
    assert trigger.status_code == 503
    assert run.status_code == 503
    assert "JOB_QUEUE_RUNNER_SECRET" in trigger.json()["error"]
    assert await job_count(conn) == 0


async def test_trigger_rejects_bad_input_with_a_clear_4xx_and_changes_nothing(
    database_url: str, conn: asyncpg.Connection
) -> None:
    cases: list[tuple[str, bytes, int, str]] = [
        ("malformed JSON", b'{"task_type": "noop",', 400, "malformed JSON"),
        ("not UTF-8", b'{"task_type": "\xff"}', 400, "malformed JSON"),
        ("not an object", b'["noop"]', 422, "JSON object"),
        ("unknown task type", b'{"task_type": "no_such_task"}', 422, "unknown task type 'no_such_task'"),
        ("invalid payload", b'{"task_type": "noop", "payload": {"sleep_s": -1}}', 422, "sleep_s"),
        ("unknown payload key", b'{"task_type": "noop", "payload": {"colour": 1}}', 422, "colour"),
        ("payload not an object", b'{"task_type": "noop", "payload": [1]}', 422, "payload"),
        ("unknown body key", b'{"task_type": "noop", "priority": "high"}', 422, "priority"),
        ("payload without type", b'{"payload": {}}', 422, "task_type is required"),
        ("empty dedupe key", b'{"task_type": "noop", "dedupe_key": ""}', 422, "dedupe_key"),
        ("bad task type name", b'{"task_type": "No Such"}', 422, "unknown task type"),
    ]
    async with http_daemon(database_url, **POLL_ONLY) as (_d, client):
        for name, raw, status, needle in cases:
            r = await client.post("/trigger", content=raw, headers={**auth(), "Content-Type": "application/json"})
            assert r.status_code == status, (name, r.text)
            assert needle in r.json()["error"], (name, r.text)
        big = json.dumps({"task_type": "noop", "payload": {"fail": "x" * MAX_BODY_BYTES}}).encode()
        r = await client.post("/trigger", content=big, headers=auth())
        assert r.status_code == 413
        assert "65536" in r.json()["error"]

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(20):
                yield b" " * 4096  # no Content-Length: the limit is enforced while reading

        r = await client.post("/trigger", content=chunks(), headers=auth())
        assert r.status_code == 413
        wrong = await client.get("/trigger", headers=auth())
        assert wrong.status_code == 405
        assert (await client.get("/no/such/path")).status_code == 404
    assert await job_count(conn) == 0


def _random_json(rng: random.Random, depth: int = 0) -> object:
    keys = ["task_type", "payload", "dedupe_key", "limit", "ids", "sleep_s", "fail", "permanent", "x"]
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 10**20, 3.5, -0.0, 1e308])
    if kind == 3:
        return rng.choice(["", "noop", "No Such", "x" * 300, "\u00e9\u0000", "00000000-0000-0000-0000-000000000000"])
    if kind in (4, 5):
        return rng.choice(["noop", "nope", "cleanup"])
    if kind == 6:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


async def test_no_random_body_ever_produces_a_500_and_rejected_bodies_change_nothing(
    database_url: str, conn: asyncpg.Connection
) -> None:
    rng = random.Random(20240601)
    async with http_daemon(database_url, **POLL_ONLY, run_budget_s=0.2) as (_d, client):
        for _ in range(60):
            value = _random_json(rng)
            raw = json.dumps(value).encode()
            if rng.random() < 0.2:
                raw = raw[: rng.randrange(len(raw) + 1)] + bytes([rng.randrange(256)])
            before = await job_count(conn)
            r = await client.post("/trigger", content=raw, headers=auth())
            assert r.status_code in (202, 400, 413, 422), (raw, r.status_code, r.text)
            assert "error" in r.json() or r.status_code == 202
            if r.status_code != 202 or not r.json().get("created"):
                assert await job_count(conn) == before, raw
            r = await client.post("/api/jobs/run", content=raw, headers=auth())
            assert r.status_code in (200, 400, 413, 422), (raw, r.status_code, r.text)
