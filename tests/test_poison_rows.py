"""Poison rows: a payload or result nothing can decode (5,000-digit integers, 2,000 levels of nesting).

The database refuses such payloads on insert; a row that got in anyway (inserted before that rule, or with
triggers disabled) fails its own job, permanently and with a clear last_error, while the daemon stays up and the
other jobs of the same claim succeed. Every read path (admin API and pages, CLI, metrics) shows such a row.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from tests.support.admin import BEARER, admin_daemon, sign_in
from tests.support.daemon import wait_for
from tests.support.procs import WorkerProcess, worker_env
from tests.support.rows import fetchval
from worker import jsonvalues
from worker.cli.main import main
from worker.errors import InvalidInput

HUGE_INTEGER = '{"n": ' + "9" * 5000 + "}"
DEEP_ARRAY = '{"n": ' + "[" * 2000 + "]" * 2000 + "}"
POISONS = [HUGE_INTEGER, DEEP_ARRAY]


async def _insert_raw(conn: asyncpg.Connection, payload_text: str, *, bypass_checks: bool) -> uuid.UUID:
    """A noop job whose payload is this JSON text. With `bypass_checks` the table's triggers are off for the insert
    (session_replication_role = replica: as a row written before the input rule existed)."""
    async with conn.transaction():
        if bypass_checks:
            await conn.execute("SET LOCAL session_replication_role = replica")
        job_id: uuid.UUID = await conn.fetchval(
            "INSERT INTO job_queue (task_type, payload) VALUES ('noop', $1::text::jsonb) RETURNING id", payload_text
        )
    return job_id


async def _row(conn: asyncpg.Connection, job_id: uuid.UUID) -> asyncpg.Record:
    return await conn.fetchrow("SELECT status, attempts, last_error FROM job_queue WHERE id = $1", job_id)


@pytest.mark.parametrize("payload", POISONS, ids=["huge-integer", "deep-nesting"])
async def test_the_database_refuses_a_payload_that_no_reader_could_decode(
    conn: asyncpg.Connection, payload: str
) -> None:
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await _insert_raw(conn, payload, bypass_checks=False)
    assert caught.value.constraint_name in ("job_queue_payload_number_check", "job_queue_payload_depth_check")
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 0


async def test_the_database_accepts_payloads_at_the_bounds_and_digits_or_brackets_inside_strings(
    conn: asyncpg.Connection,
) -> None:
    depth = jsonvalues.MAX_DEPTH - 1  # the payload object itself is one level
    at_bounds = [
        '{"n": ' + "[" * depth + "]" * depth + "}",
        '{"n": ' + "9" * jsonvalues.MAX_NUMBER_DIGITS + "}",
        '{"s": "' + "9" * 5000 + "[" * 3000 + '"}',
    ]
    for text in at_bounds:
        job_id = await _insert_raw(conn, text, bypass_checks=False)
        assert await conn.fetchval("SELECT payload = $2::text::jsonb FROM job_queue WHERE id = $1", job_id, text)
        assert json.dumps(jsonvalues.loads(await conn.fetchval(
            "SELECT payload::text FROM job_queue WHERE id = $1", job_id))) is not None
    over = '{"n": ' + "[" * (depth + 1) + "]" * (depth + 1) + "}"
    with pytest.raises(asyncpg.CheckViolationError):
        await _insert_raw(conn, over, bypass_checks=False)


@pytest.mark.parametrize("payload", POISONS, ids=["huge-integer", "deep-nesting"])
def test_python_refuses_the_same_payloads_before_the_database_sees_them(payload: str) -> None:
    with pytest.raises(InvalidInput, match=r"^payload"):
        jsonvalues.dumps_bounded(_python_value(payload), what="payload")


def _python_value(text: str) -> Any:
    if text is HUGE_INTEGER:
        return {"n": 10 ** 4200}  # within int's default string limit, beyond the database's bound
    nested: Any = []
    for _ in range(2000):
        nested = [nested]
    return {"n": nested}


@pytest.mark.slow
async def test_a_poison_row_fails_alone_and_the_daemon_and_the_other_jobs_of_its_claim_carry_on(
    database_url: str, conn: asyncpg.Connection
) -> None:
    ordinary = [await _insert_raw(conn, "{}", bypass_checks=False) for _ in range(6)]
    poisoned = [await _insert_raw(conn, text, bypass_checks=True) for text in POISONS]
    proc = WorkerProcess(worker_env(database_url), name="poison")
    try:
        async def all_ended() -> bool:
            rows = [await _row(conn, j) for j in ordinary + poisoned]
            return all(r["status"] in ("succeeded", "failed") for r in rows)

        await wait_for(all_ended, timeout_s=30)
        for job_id in ordinary:
            assert (await _row(conn, job_id))["status"] == "succeeded"
        for job_id in poisoned:
            row = await _row(conn, job_id)
            assert row["status"] == "failed"
            assert row["attempts"] == 1, "failed for good at once: no attempt of it or of others burnt by restarts"
            assert "could not be decoded" in row["last_error"]
        assert proc.alive, proc.output[-3000:]
        later = await _insert_raw(conn, "{}", bypass_checks=False)

        async def later_done() -> bool:
            return (await _row(conn, later))["status"] == "succeeded"

        await wait_for(later_done, timeout_s=15)
        assert not proc.named("daemon.loop_crashed")
    finally:
        proc.terminate()
        assert await proc.wait_exit() == 0
        proc.cleanup()


async def test_a_handler_result_nested_too_deep_fails_its_job_and_stores_nothing_undecodable(
    database_url: str, conn: asyncpg.Connection
) -> None:
    from tests.support.admin import Anything, admin_registry

    registry = admin_registry()

    @registry.register("deep_result", Anything)
    async def deep_result(payload: Anything, ctx: Any) -> Any:
        return _python_value(DEEP_ARRAY)

    async with admin_daemon(database_url, registry) as (daemon, _client):
        job_id = await conn.fetchval(
            "INSERT INTO job_queue (task_type, payload) VALUES ('deep_result', '{}') RETURNING id"
        )

        async def ended() -> bool:
            return (await _row(conn, job_id))["status"] in ("failed", "succeeded")

        await wait_for(ended, timeout_s=10)
        row = await _row(conn, job_id)
        assert row["status"] == "failed"
        assert "nested deeper" in row["last_error"]
        assert daemon.exit_code == 0 and not daemon.stop_event.is_set()


async def _poison_every_column(conn: asyncpg.Connection) -> uuid.UUID:
    job_id = await _insert_raw(conn, HUGE_INTEGER, bypass_checks=True)
    await conn.execute(
        "UPDATE job_queue SET status = 'failed', attempts = 1, finished_at = now(), last_error = 'x', "
        "result = $2::text::jsonb WHERE id = $1", job_id, DEEP_ARRAY,
    )
    return job_id


async def test_the_admin_api_pages_and_metrics_show_a_poison_row(database_url: str, conn: asyncpg.Connection) -> None:
    job_id = await _poison_every_column(conn)
    async with admin_daemon(database_url) as (_daemon, client):
        detail = await client.get(f"/admin/api/jobs/{job_id}", headers=BEARER)
        assert detail.status_code == 200, detail.text
        job = detail.json()["job"] if "job" in detail.json() else detail.json()
        assert "could not be decoded" in json.dumps(job)
        listing = await client.get("/admin/api/jobs", headers=BEARER)
        assert listing.status_code == 200, listing.text
        assert str(job_id) in listing.text
        assert (await client.get("/admin/api/overview", headers=BEARER)).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        await sign_in(client)
        page = await client.get(f"/admin/jobs/{job_id}")
        assert page.status_code == 200, page.text
        assert "could not be decoded" in page.text


def test_worker_jobs_show_and_list_print_a_poison_row(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    async def make() -> uuid.UUID:
        c = await asyncpg.connect(database_url)
        try:
            return await _poison_every_column(c)
        finally:
            await c.close()

    job_id = asyncio.run(make())
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("WORKER_LOG_FORMAT", "json")
    for argv in (["jobs", "show", str(job_id)], ["jobs", "show", str(job_id), "--json"], ["jobs", "list"],
                 ["jobs", "list", "--json"]):
        capsys.readouterr()
        assert main(argv) == 0, argv
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        if argv[1] == "show":
            assert "could not be decoded" in out
    assert fetchval(database_url, "SELECT status FROM job_queue WHERE id = $1", job_id) == "failed"
