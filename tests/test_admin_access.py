"""The admin page's access rules over real HTTP: off without a token, 401 for a wrong one, the session cookie,
CSRF protection on every state change."""

from __future__ import annotations

import asyncpg
from starlette.responses import Response

from tests.support.admin import BEARER, TOKEN, admin_daemon, browser_headers, origin, sign_in
from tests.support.http import http_daemon
from worker.http.admin.auth import COOKIE, AdminAuth


async def test_admin_is_off_without_a_token(database_url: str) -> None:
    async with http_daemon(database_url) as (_, client):
        for path in ("/admin", "/admin/", "/admin/login", "/admin/api/overview", "/admin/static/admin.js"):
            assert (await client.get(path)).status_code == 404, path
        r = await client.post("/admin/api/pause", json={}, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 404


async def test_wrong_token_is_401_without_detail(database_url: str) -> None:
    async with admin_daemon(database_url) as (_, client):
        r = await client.post("/admin/login", data={"token": "wrong"}, headers=origin(client))
        assert r.status_code == 401
        assert "set-cookie" not in r.headers
        assert "Sign-in failed." in r.text and TOKEN not in r.text
        for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {}):
            r = await client.get("/admin/api/overview", headers=headers)
            assert r.status_code == 401
            assert r.json() == {"error": "unauthorized"}
        page = await client.get("/admin/")
        assert page.status_code == 303 and page.headers["location"] == "/admin/login"


async def test_sign_in_sets_a_signed_httponly_samesite_strict_cookie(database_url: str) -> None:
    async with admin_daemon(database_url) as (_, client):
        r = await client.post("/admin/login", data={"token": TOKEN}, headers=origin(client))
        assert r.status_code == 303 and r.headers["location"] == "/admin/"
        cookie = r.headers["set-cookie"]
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert cookie.startswith(f"{COOKIE}=")
        assert "httponly" in flags and "samesite=strict" in flags and "path=/admin" in flags
        assert TOKEN not in cookie
        assert (await client.get("/admin/")).status_code == 200
        assert (await client.get("/admin/api/overview")).status_code == 200

        value = client.cookies[COOKIE]
        client.cookies.clear()
        tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
        assert (await client.get("/admin/api/overview", headers={"Cookie": f"{COOKIE}={tampered}"})).status_code == 401
        # A cookie signed under another token (the token was rotated) is refused: everyone is signed out.
        other = Response()
        AdminAuth("the-previous-admin-token").start_session(other, secure=False)
        stale = other.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        assert (await client.get("/admin/api/overview", headers={"Cookie": f"{COOKIE}={stale}"})).status_code == 401


async def test_sign_in_from_a_foreign_origin_is_refused(database_url: str) -> None:
    async with admin_daemon(database_url) as (_, client):
        r = await client.post("/admin/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "set-cookie" not in r.headers


async def test_state_changes_need_the_csrf_token_and_our_origin(database_url: str, conn: asyncpg.Connection) -> None:
    async with admin_daemon(database_url) as (_, client):
        csrf = await sign_in(client)
        base = origin(client)["Origin"]
        refused = [
            ({"Origin": base}, "missing or wrong CSRF token"),
            ({"Origin": base, "X-CSRF-Token": "0" * 64}, "missing or wrong CSRF token"),
            ({"Origin": "http://evil.example", "X-CSRF-Token": csrf}, "foreign Origin"),
            ({"Referer": "http://evil.example/page", "X-CSRF-Token": csrf}, "foreign Origin"),
            ({"X-CSRF-Token": csrf}, "no Origin"),
        ]
        for headers, reason in refused:
            r = await client.post("/admin/api/pause", json={"task_type": "noop"}, headers=headers)
            assert r.status_code == 403, headers
            assert reason in r.json()["error"]
        assert await conn.fetchval("SELECT count(*) FROM job_queue_pause") == 0

        r = await client.post("/admin/api/pause", json={"task_type": "noop"}, headers=browser_headers(client, csrf))
        assert r.status_code == 200
        assert await conn.fetchval("SELECT task_type FROM job_queue_pause") == "noop"

        # Sign out needs the CSRF token too; afterwards the cookie no longer works.
        r = await client.post("/admin/logout", data={"csrf_token": "nope"}, headers=origin(client))
        assert r.status_code == 403
        r = await client.post("/admin/logout", data={"csrf_token": csrf}, headers=origin(client))
        assert r.status_code == 303
        assert (await client.get("/admin/api/overview")).status_code == 401


async def test_bearer_token_calls_need_no_csrf_token(database_url: str, conn: asyncpg.Connection) -> None:
    async with admin_daemon(database_url) as (_, client):
        r = await client.post("/admin/api/pause", json={"task_type": "*"}, headers=BEARER)
        assert r.status_code == 200 and r.json()["paused"]["task_type"] == "*"
        # A bearer header that is wrong is not rescued by a valid session cookie.
        await sign_in(client)
        r = await client.post("/admin/api/resume", json={"task_type": "*"}, headers={"Authorization": "Bearer x"})
        assert r.status_code == 401
        assert await conn.fetchval("SELECT count(*) FROM job_queue_pause") == 1


async def test_pages_forbid_inline_script_and_framing(database_url: str) -> None:
    async with admin_daemon(database_url) as (_, client):
        await sign_in(client)
        r = await client.get("/admin/")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert "<script>" not in r.text  # only the external script file
