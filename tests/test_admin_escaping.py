"""No HTML injection: job payloads, errors and results are escaped in the server-rendered pages."""

from __future__ import annotations

import asyncpg

from tests.support.admin import admin_daemon, enqueue, sign_in, until_status

INJECTED = "<script>alert('xss')</script><img src=x onerror=alert(1)>"


async def test_script_in_payload_and_error_is_shown_escaped(database_url: str, conn: asyncpg.Connection) -> None:
    async with admin_daemon(database_url) as (_, client):
        job_id = await enqueue(conn, "boom", {"error": INJECTED, "note": INJECTED}, max_attempts=1)
        await until_status(conn, job_id, "failed")
        await conn.execute("UPDATE job_queue SET result = $2 WHERE id = $1", job_id,
                           {"errors": [{"competitor_id": INJECTED, "error": INJECTED}], INJECTED: INJECTED})
        await sign_in(client)
        for path in (f"/admin/jobs/{job_id}", "/admin/?status=failed"):
            html = (await client.get(path)).text
            assert "&lt;script&gt;alert(" in html, path
            assert "<script>alert" not in html and "<img src=x" not in html, path
        detail = (await client.get(f"/admin/jobs/{job_id}")).text
        assert detail.count("&lt;script&gt;") >= 4  # last error, payload, attempt error, result table
