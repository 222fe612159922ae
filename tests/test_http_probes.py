"""/healthz and /readyz over a real HTTP connection to a running daemon with a real database."""

from __future__ import annotations

import asyncpg
import httpx

from tests.support.daemon import wait_for
from tests.support.http import POLL_ONLY, http_daemon
from worker.migrate import latest_version


async def test_healthz_is_200_and_lists_the_live_loops(database_url: str) -> None:
    async with http_daemon(database_url) as (_daemon, client):
        r = await client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["loops"]["http"] is True
    assert body["loops"]["fetcher"] is True
    assert body["loops"]["listener"] is True


async def test_healthz_is_503_naming_a_dead_loop(database_url: str) -> None:
    async with http_daemon(database_url) as (daemon, client):
        daemon.alive["heartbeat"] = False  # what the supervisor records when a loop has ended
        r = await client.get("/healthz")
        daemon.alive["heartbeat"] = True
    assert r.status_code == 503
    assert r.json()["dead_loops"] == ["heartbeat"]


async def test_readyz_is_200_when_database_listener_and_schema_are_fine(database_url: str) -> None:
    async with http_daemon(database_url) as (daemon, client):
        assert daemon.listener is not None
        listener = daemon.listener

        async def probed() -> bool:
            return listener.state.probe_age_s() is not None

        await wait_for(probed)
        r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert body["failing"] == []
    assert body["checks"]["schema"] == {"ok": True, "current": latest_version(), "latest": latest_version()}
    assert body["checks"]["listener"]["connected"] is True


async def test_readyz_is_503_naming_the_schema_when_a_migration_is_missing(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await conn.execute("DELETE FROM worker_migrations WHERE version = $1", latest_version())
    async with http_daemon(database_url, listen_enabled=False) as (_daemon, client):
        r = await client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["failing"] == ["schema"]
    assert body["checks"]["schema"]["current"] == latest_version() - 1
    assert "needs" in body["checks"]["schema"]["error"]


async def test_readyz_is_503_naming_the_listener_when_its_round_trip_is_stale(database_url: str) -> None:
    overrides = {"listen_probe_interval_s": 120.0, "listen_probe_timeout_s": 0.2, "readyz_probe_max_age_s": 0.5}
    async with http_daemon(database_url, **overrides) as (daemon, client):
        assert daemon.listener is not None
        listener = daemon.listener

        async def stale() -> bool:
            age = listener.state.probe_age_s()
            return age is not None and age > 0.6

        await wait_for(stale)
        r = await client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["failing"] == ["listener"]
    assert "older than 0.5s" in body["checks"]["listener"]["error"]


async def test_readyz_skips_the_listener_check_in_poll_only_mode_and_says_so(database_url: str) -> None:
    async with http_daemon(database_url, listen_enabled=False) as (_daemon, client):
        r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"]["listener"] == {"ok": True, "skipped": "LISTEN is disabled (poll-only mode)"}


async def test_readyz_is_503_naming_the_database_when_it_refuses_connections(
    database_url: str, fresh_db_name: str
) -> None:
    async with http_daemon(database_url, **POLL_ONLY) as (daemon, client):
        assert daemon.started.is_set()
        admin = await asyncpg.connect(database_url.rsplit("/", 1)[0] + "/postgres")
        try:
            await admin.execute(f'ALTER DATABASE "{fresh_db_name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", fresh_db_name
            )
            r = await client.get("/readyz")
        finally:
            await admin.execute(f'ALTER DATABASE "{fresh_db_name}" ALLOW_CONNECTIONS true')
            await admin.close()
    assert r.status_code == 503
    body = r.json()
    assert "database" in body["failing"]
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"]


async def test_probes_refuse_a_wrong_method_with_405(database_url: str) -> None:
    async with http_daemon(database_url, listen_enabled=False) as (_daemon, client):
        r1 = await client.post("/healthz")
        r2 = await client.delete("/readyz")
        r3 = await client.post("/metrics")
    assert [r1.status_code, r2.status_code, r3.status_code] == [405, 405, 405]
    assert r1.json() == {"error": "Method Not Allowed"}
    assert r1.headers["allow"] in {"GET, HEAD", "HEAD, GET"}


async def test_while_stopping_healthz_says_stopping_readyz_is_503_and_then_the_port_closes(
    database_url: str,
) -> None:
    from worker import queue

    async with http_daemon(database_url, shutdown_grace_s=5.0) as (daemon, client):
        port = client.base_url.port
        job = await queue.enqueue(daemon.pool, queue.NewJob("noop", {"sleep_s": 1.0}))

        async def running() -> bool:
            return job.id in daemon.running

        await wait_for(running)
        daemon.stop()
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert (health.status_code, health.json()["status"]) == (200, "stopping")
    assert ready.status_code == 503
    assert "daemon" in ready.json()["failing"]
    assert ready.json()["checks"]["daemon"]["error"] == "stopping"
    async with httpx.AsyncClient(timeout=2) as fresh:
        try:
            await fresh.get(f"http://127.0.0.1:{port}/healthz")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("the HTTP port is still open after the daemon stopped")


async def test_a_malformed_http_request_is_a_400_logged_as_a_structured_event(database_url: str) -> None:
    import anyio
    import structlog

    async with http_daemon(database_url, **POLL_ONLY) as (_daemon, client):
        with structlog.testing.capture_logs() as logs:
            stream = await anyio.connect_tcp("127.0.0.1", client.base_url.port or 0)
            async with stream:
                await stream.send(b"NOT A REQUEST\r\n\r\n")
                reply = await stream.receive()
        health = await client.get("/healthz")
    assert reply.startswith(b"HTTP/1.1 400")
    assert health.status_code == 200
    assert any(e["event"] == "http.server_log" and e["log_level"] == "warning" for e in logs), logs
