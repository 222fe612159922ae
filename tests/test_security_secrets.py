"""Secrets never leak: a real `worker run` with every secret set (runner secret and its predecessor, admin token,
game platform API key, a database password in DATABASE_URL, a Sentry DSN key) goes through a full cycle — jobs
succeeding and failing (the platform rejecting the key), a database hiccup (its backends terminated), auth
failures on every guarded door, the admin pages — and nothing it emits contains a secret: stdout, stderr,
/metrics, /healthz, /readyz, every HTTP answer, the admin HTML, the job rows and the ledger, Sentry events.
Also: every credential check compares in constant time."""

from __future__ import annotations

import inspect
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.support.daemon import wait_for
from tests.support.game_platform import Platform, seed_competitors
from tests.support.procs import WorkerProcess, worker_env
from tests.support.sentry_receiver import SentryReceiver

SECRETS = {
    "JOB_QUEUE_RUNNER_SECRET": "s3cret-runner-cur-4b1f9e",
    "JOB_QUEUE_RUNNER_SECRET_PREVIOUS": "s3cret-runner-prev-7c0d22",
    "WORKER_ADMIN_TOKEN": "s3cret-admin-tok-19ae5b",
    "GAME_PLATFORM_API_KEY": "s3cret-gp-key-83f0aa",
}
DB_PASSWORD = "s3cret-dbpw-Q7x!z"
SENTRY_KEY = "s3cretsentrykey5d9e"


@pytest.mark.slow
async def test_no_secret_appears_in_anything_a_full_run_emits(
    database_url: str, conn: asyncpg.Connection, platform: Platform, pool: asyncpg.Pool
) -> None:
    role = f"worker_login_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{DB_PASSWORD.replace(chr(39), chr(39) * 2)}'")
    parts = urlsplit(database_url)
    from urllib.parse import quote

    url = urlunsplit(parts._replace(netloc=f"{role}:{quote(DB_PASSWORD, safe='')}@{parts.hostname}:{parts.port}"))
    await seed_competitors(pool, 5)
    platform.sim.api_key = "the-platform-expects-another-key"  # our key is rejected: the error must not echo it
    answers: list[str] = []
    try:
        with SentryReceiver() as receiver:
            env = worker_env(
                url, **SECRETS, SENTRY_DSN=receiver.dsn(SENTRY_KEY), GAME_PLATFORM_BASE_URL=platform.url,
                WORKER_HTTP_ENABLED="true", WORKER_HTTP_HOST="127.0.0.1", WORKER_HTTP_PORT="0",
                WORKER_LOG_LEVEL="debug", WORKER_LEASE_S="5",
            )
            proc = WorkerProcess(env, name="secrets")
            try:
                port = await proc.http_port()
                base = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                    await wait_for(lambda: _ok(client, "/readyz"), timeout_s=20)
                    runner = {"Authorization": f"Bearer {SECRETS['JOB_QUEUE_RUNNER_SECRET_PREVIOUS']}"}
                    wrong = {"Authorization": f"Bearer {SECRETS['JOB_QUEUE_RUNNER_SECRET']}x"}
                    admin_wrong = {"Authorization": f"Bearer {SECRETS['WORKER_ADMIN_TOKEN']}x"}
                    responses = [
                        await client.post("/trigger", headers=runner, json={"task_type": "noop"}),
                        await client.post("/trigger", headers=runner,
                                          json={"task_type": "game_platform_sync", "payload": {}}),
                        await client.post("/trigger", headers=wrong, json={"task_type": "noop"}),
                        await client.post("/api/jobs/run", headers=wrong),
                        await client.post("/trigger", headers=runner, json={"task_type": "noop", "payload": [1]}),
                        await client.get("/admin/api/jobs", headers=admin_wrong),
                        await client.post("/admin/login", data={"token": "nope"},
                                          headers={"Origin": base}),
                    ]
                    assert [r.status_code for r in responses] == [202, 202, 401, 401, 422, 401, 401]
                    ids = [uuid.UUID(r.json()["job_id"]) for r in responses[:2]]

                    async def finished() -> bool:
                        rows = await conn.fetch("SELECT status FROM job_queue WHERE id = ANY($1::uuid[])", ids)
                        return sorted(r["status"] for r in rows) == ["failed", "succeeded"]

                    await conn.execute("UPDATE job_queue SET max_attempts = 1 WHERE id = $1", ids[1])
                    await wait_for(finished, timeout_s=20)
                    # a database hiccup: every backend of the daemon terminated
                    await conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
                    )
                    await proc.wait_event("listener.reconnected", timeout_s=15)
                    await wait_for(lambda: _ok(client, "/readyz"), timeout_s=15)
                    # the admin pages, signed in
                    login = await client.post("/admin/login", data={"token": SECRETS["WORKER_ADMIN_TOKEN"]},
                                              headers={"Origin": base})
                    assert login.status_code == 303, login.text
                    pages = [await client.get("/admin/"), await client.get(f"/admin/jobs/{ids[1]}"),
                             await client.get("/admin/api/overview"), await client.get(f"/admin/api/jobs/{ids[1]}")]
                    assert [p.status_code for p in pages] == [200, 200, 200, 200]
                    probes = [await client.get(p) for p in ("/metrics", "/healthz", "/readyz")]
                    answers += [r.text + str(r.headers) for r in [*responses, *pages, *probes, login]]
                    assert "worker_jobs" in probes[0].text
                await receiver_wait(receiver)
                proc.terminate()
                assert await proc.wait_exit() == 0
            finally:
                proc.cleanup()
            sentry = str(receiver.events())
        rows = await conn.fetchval(
            "SELECT string_agg(t::text, ' ') FROM (SELECT row_to_json(j)::text AS t FROM job_queue j "
            "UNION ALL SELECT row_to_json(r)::text FROM job_runs r) AS x"
        )
        assert "PlatformAuthError" in rows  # the failure is recorded, without the key
        emitted = {"logs": proc.output, "http": "\n".join(answers), "job rows": rows, "sentry": sentry}
        assert "http.unauthorized" in proc.output and "admin.sign_in_failed" in proc.output
        forbidden = [*SECRETS.values(), DB_PASSWORD, quote(DB_PASSWORD, safe=""), SENTRY_KEY]
        for where, text in emitted.items():
            for secret in forbidden:
                assert secret not in text, f"a secret ({secret[:8]}...) leaked into {where}"
    finally:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await conn.execute(f"DROP ROLE IF EXISTS {role}")


async def _ok(client: httpx.AsyncClient, path: str) -> bool:
    try:
        return (await client.get(path)).status_code == 200
    except httpx.HTTPError:
        return False


async def receiver_wait(receiver: SentryReceiver) -> None:
    import anyio

    await anyio.to_thread.run_sync(lambda: receiver.wait_for_events(1))


def test_every_credential_check_compares_in_constant_time() -> None:
    """The runner secret (/trigger, /api/jobs/run), the admin token (bearer and sign-in) and the CSRF token are
    compared with hmac.compare_digest, never with == on the secret."""
    from worker.http import app
    from worker.http.admin import auth as admin_auth

    checks = {
        "runner secret": inspect.getsource(app.create_app),
        "admin token": inspect.getsource(admin_auth.AdminAuth.token_matches),
        "csrf token": inspect.getsource(admin_auth.AdminAuth.csrf_problem),
    }
    for name, source in checks.items():
        assert "compare_digest(" in source, name
        assert "== secret" not in source and "secret ==" not in source and "== self._token" not in source, name


async def test_the_runner_secret_check_goes_through_compare_digest(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behaviourally: every authorised or refused request calls hmac.compare_digest once per configured secret
    (so the time does not tell which one matched or how much of it)."""
    import hmac as hmac_module

    from tests.support.http import PREVIOUS, SECRET, http_daemon

    calls: list[tuple[bytes, bytes]] = []
    real = hmac_module.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    async with http_daemon(database_url, runner_secret_previous=PREVIOUS) as (_, client):
        monkeypatch.setattr("worker.http.app.hmac.compare_digest", spy)
        for token, status in ((SECRET, 202), (PREVIOUS, 202), ("wrong", 401), (SECRET[:-1], 401)):
            calls.clear()
            r = await client.post("/trigger", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == status
            assert sorted(b for _, b in calls) == sorted([SECRET.encode(), PREVIOUS.encode()])
