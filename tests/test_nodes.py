"""Live workers (worker_nodes): a daemon registers itself with its heartbeat and leaves when it stops; a worker
not seen for GONE_LEASES lease periods is not listed and is deleted; task types with due jobs and no live
worker are flagged by the admin API, /metrics, `worker doctor` and `worker workers`."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import asyncpg
import pytest

from tests.support.admin import BEARER, admin_daemon, sign_in
from tests.support.daemon import make_settings, running_daemon, wait_for
from worker import __version__, nodes
from worker.builtin import default_registry
from worker.cli.doctor import run_checks
from worker.cli.main import main
from worker.metrics import Metrics

ORPHAN = "orphan_type"


async def _rows(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch("SELECT * FROM worker_nodes ORDER BY worker_id")]


async def _add_node(conn: asyncpg.Connection, worker_id: str, seen_s_ago: float, task_types: list[str],
                    lease_s: float = 5.0) -> None:
    await conn.execute(
        "INSERT INTO worker_nodes (worker_id, host, pid, version, task_types, concurrency, lease_s, started_at,"
        " last_seen) VALUES ($1, 'h', 1, 'v', $2, 1, $3, now(), now() - make_interval(secs => $4))",
        worker_id, task_types, lease_s, seen_s_ago,
    )


async def _orphan_job(conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO job_queue (task_type, run_at) VALUES ($1, now() - interval '1 minute')", ORPHAN)


async def test_a_running_daemon_registers_itself_with_its_task_types_and_leaves_when_it_stops(
    database_url: str, conn: asyncpg.Connection
) -> None:
    settings = make_settings(database_url, worker_id="node-a", lease_s=3.0, concurrency=4)
    registry = default_registry()
    async with running_daemon(settings, registry):
        await wait_for(lambda: _has(conn, "node-a"))
        (row,) = await _rows(conn)
        assert row["task_types"] == registry.names()
        assert (row["concurrency"], row["lease_s"], row["version"]) == (4, 3.0, __version__)
        first_seen = row["last_seen"]
        (live,) = await nodes.live_workers(conn)
        assert live["worker_id"] == "node-a" and live["fresh"]

        async def refreshed() -> bool:
            rows = await _rows(conn)
            return bool(rows) and rows[0]["last_seen"] > first_seen
        await wait_for(refreshed, timeout_s=5)  # the heartbeat interval is lease_s / 3 = 1 s
    assert await _rows(conn) == []


async def _has(conn: asyncpg.Connection, worker_id: str) -> bool:
    return any(r["worker_id"] == worker_id for r in await _rows(conn))


async def test_a_worker_gone_for_three_lease_periods_is_not_listed_and_the_next_heartbeat_deletes_it(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await _add_node(conn, "dead", seen_s_ago=16.0, task_types=["noop"], lease_s=5.0)   # > 3 x 5 s: gone
    await _add_node(conn, "late", seen_s_ago=7.0, task_types=["noop"], lease_s=5.0)    # > 1 lease: stale, listed
    listed = {w["worker_id"]: w["fresh"] for w in await nodes.live_workers(conn)}
    assert listed == {"late": False}
    settings = make_settings(database_url, worker_id="node-b")
    async with running_daemon(settings, default_registry()):
        await wait_for(lambda: _has(conn, "node-b"))
        assert {r["worker_id"] for r in await _rows(conn)} == {"late", "node-b"}


async def test_due_jobs_no_live_worker_handles_are_flagged_by_the_api_metrics_and_doctor(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await _orphan_job(conn)
    await _add_node(conn, "gone", seen_s_ago=100.0, task_types=[ORPHAN])  # gone: does not count
    async with admin_daemon(database_url) as (_, client):
        # The daemon registers in its node loop, which may beat after the HTTP port is up: wait for its row.
        await wait_for(lambda: _has(conn, "test-worker"))
        r = await client.get("/admin/api/workers", headers=BEARER)
        assert r.status_code == 200
        body = r.json()
        assert [w["worker_id"] for w in body["workers"]] == ["test-worker"]
        assert [(u["task_type"], u["due"]) for u in body["unserved"]] == [(ORPHAN, 1)]
        text = (await client.get("/metrics")).text
        assert f'worker_unserved_due_jobs{{task_type="{ORPHAN}"}} 1.0' in text
        assert re.search(r'worker_live_workers\{task_type="noop"\} 1\.0', text)
        assert "worker_listener_up 1.0" in text
    checks = {c.name: c for c in await run_checks(make_settings(database_url), default_registry())}
    assert checks["live_workers"].status == "fail"
    assert ORPHAN in checks["live_workers"].figure
    # Paused: nothing would claim it anyway, so it is not flagged.
    await conn.execute("INSERT INTO job_queue_pause (task_type) VALUES ($1)", ORPHAN)
    assert await nodes.unserved_task_types(conn) == []


async def test_metrics_count_live_workers_by_task_type_from_the_database(conn: asyncpg.Connection) -> None:
    await _add_node(conn, "a", seen_s_ago=0.0, task_types=["noop", "cleanup"])
    await _add_node(conn, "b", seen_s_ago=0.0, task_types=["noop"])
    metrics = Metrics(["noop", "cleanup", "game_platform_sync"])
    assert await metrics.refresh(conn)
    text = metrics.render().decode()
    for task_type, n in (("noop", 2), ("cleanup", 1), ("game_platform_sync", 0)):
        assert f'worker_live_workers{{task_type="{task_type}"}} {n}.0' in text


def test_worker_workers_prints_live_workers_as_a_table_and_as_json(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def seed() -> None:
        c = await asyncpg.connect(database_url)
        try:
            await _add_node(c, "cli-node", seen_s_ago=1.0, task_types=["noop"])
            await _orphan_job(c)
        finally:
            await c.close()
    asyncio.run(seed())
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("WORKER_LOG_FORMAT", "json")
    assert main(["workers", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [w["worker_id"] for w in out["workers"]] == ["cli-node"]
    assert out["workers"][0]["task_types"] == ["noop"]
    assert [u["task_type"] for u in out["unserved"]] == [ORPHAN]
    assert main(["workers"]) == 0
    table = capsys.readouterr().out
    assert "cli-node" in table and f"no live worker handles {ORPHAN}: 1 due job(s)" in table



async def test_pending_jobs_of_a_type_no_live_worker_handles_are_shown_in_the_task_table_and_fail_doctor(
    database_url: str, conn: asyncpg.Connection
) -> None:
    """A type whose jobs are all due later (a plugin uninstalled, a replica split wrongly) is not healthy either."""
    await conn.execute("INSERT INTO job_queue (task_type, run_at) VALUES ($1, now() + interval '1 hour')", ORPHAN)
    async with admin_daemon(database_url) as (_, client):
        await sign_in(client)
        page = (await client.get("/admin/")).text
        row = re.search(rf'<tr data-task-type="{ORPHAN}">.*?</tr>', page, re.S)
        assert row is not None, page
        assert "no worker handles this type" in row.group(0)
        noop = re.search(r'<tr data-task-type="noop">.*?</tr>', page, re.S)
        assert noop is not None and "no worker handles this type" not in noop.group(0)
    checks = {c.name: c for c in await run_checks(make_settings(database_url), default_registry())}
    assert checks["live_workers"].status == "fail"
    assert f"{ORPHAN} (1 pending, 0 due)" in checks["live_workers"].figure
