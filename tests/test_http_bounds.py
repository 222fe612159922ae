"""Bounds at the HTTP edge: JSON nested too deep, numbers too large or not finite, query integers that are not
plain ASCII digits, and clients that never finish sending their request. Every such input is a 4xx with the
endpoint's usual `{"error": ...}` body, nothing is logged as an internal error and no row changes; slow clients
are disconnected and cannot starve /healthz."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
from structlog.testing import capture_logs

from tests.admin_helpers import BEARER, admin_daemon, enqueue
from tests.hostile_support import FINGERPRINT
from tests.http_helpers import SECRET, auth
from worker import operator, queue
from worker.http.inputs import MAX_JSON_DEPTH

MARK = "@V@"
DEEP = {
    "2,000 nested arrays": "[" * 2000 + "]" * 2000,
    "2,000 nested objects": '{"a":' * 2000 + "1" + "}" * 2000,
    "100,000 nested arrays": "[" * 100_000 + "]" * 100_000,
}
OUT_OF_RANGE = {
    "a 5,000-digit integer": "9" * 5000,
    "a negative 5,000-digit integer": "-" + "9" * 5000,
    "1e999 (infinite as a double)": "1e999",
    "a 5,000-digit decimal": "1" * 5000 + ".5",
}
NOT_JSON = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}


@contextlib.asynccontextmanager
async def _daemon(database_url: str, conn: asyncpg.Connection) -> AsyncIterator[httpx.AsyncClient]:
    await operator.pause(conn)  # nothing runs: every row stays as set, so any change is the request's doing
    async with admin_daemon(database_url, runner_secret=SECRET) as (_daemon, client):
        yield client


async def _jobs(conn: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    """A pending job and a cancelled one: what each action would change if it let the request through."""
    pending = await enqueue(conn, "noop")
    cancelled = await enqueue(conn, "noop")
    await queue.cancel(conn, [cancelled], "set up by the test")
    return pending, cancelled


def _endpoints(pending: uuid.UUID, cancelled: uuid.UUID) -> list[tuple[str, dict[str, str], str]]:
    """Every endpoint that takes a JSON body: (path, credentials, a body that would act, with MARK for a value)."""
    runner, admin = auth(), BEARER
    return [
        ("/trigger", runner, f'{{"task_type":"flaky","payload":{{"n":{MARK}}}}}'),
        ("/api/jobs/run", runner, f'{{"limit":1,"n":{MARK}}}'),
        ("/api/jobs/run", runner, f'{{"limit":{MARK}}}'),
        ("/admin/api/jobs/retry", admin, f'{{"ids":["{cancelled}",{MARK}]}}'),
        ("/admin/api/jobs/cancel", admin, f'{{"ids":["{pending}"],"reason":{MARK}}}'),
        ("/admin/api/jobs/archive", admin, f'{{"ids":["{cancelled}"],"filter":{MARK}}}'),
        (f"/admin/api/jobs/{cancelled}/retry", admin, f'{{"n":{MARK}}}'),
        (f"/admin/api/jobs/{pending}/cancel", admin, f'{{"reason":{MARK}}}'),
        (f"/admin/api/jobs/{cancelled}/archive", admin, f"[{MARK}]"),
        (f"/admin/api/jobs/{pending}/run-now", admin, f'{{"n":{MARK}}}'),
        ("/admin/api/pause", admin, f'{{"task_type":"noop","reason":{MARK}}}'),
        ("/admin/api/resume", admin, f'{{"task_type":{MARK}}}'),
    ]


def _no_internal_errors(logs: list[dict[str, Any]]) -> None:
    bad = [e for e in logs if str(e.get("event", "")).endswith("internal_error") or e.get("exc_info")]
    assert not bad, bad[:3]


async def _refused_everywhere(
    database_url: str, conn: asyncpg.Connection, values: dict[str, str], statuses: dict[str, set[int]]
) -> None:
    async with _daemon(database_url, conn) as client:
        pending, cancelled = await _jobs(conn)
        before = await conn.fetchval(FINGERPRINT)
        with capture_logs() as logs:
            for name, value in values.items():
                for path, credentials, template in _endpoints(pending, cancelled):
                    body = template.replace(MARK, value).encode()
                    r = await client.post(path, content=body,
                                          headers={**credentials, "Content-Type": "application/json"})
                    assert r.status_code in statuses[name], (name, path, r.status_code, r.text[:300])
                    error = r.json()["error"]
                    assert isinstance(error, str) and error, (name, path, r.text[:300])
                    assert await conn.fetchval(FINGERPRINT) == before, (name, path, "a refused request changed rows")
        _no_internal_errors(logs)


async def test_json_nested_2000_or_100000_levels_deep_is_refused_on_every_body_endpoint_and_changes_nothing(
    database_url: str, conn: asyncpg.Connection
) -> None:
    statuses = {name: {413} if name.startswith("100,000") else {422} for name in DEEP}
    await _refused_everywhere(database_url, conn, DEEP, statuses)


async def test_huge_integers_and_infinite_numbers_are_refused_with_422_on_every_body_endpoint(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await _refused_everywhere(database_url, conn, OUT_OF_RANGE, {name: {422} for name in OUT_OF_RANGE})


async def test_nan_and_infinity_are_not_json_and_answer_400_on_every_body_endpoint(
    database_url: str, conn: asyncpg.Connection
) -> None:
    await _refused_everywhere(database_url, conn, NOT_JSON, {name: {400} for name in NOT_JSON})


async def test_lone_surrogates_in_json_strings_are_refused_on_every_body_endpoint(
    database_url: str, conn: asyncpg.Connection
) -> None:
    values = {"a lone high surrogate": '"\\ud800"', "a lone low surrogate key": '{"\\udc00":1}'}
    await _refused_everywhere(database_url, conn, values, {name: {400} for name in values})


async def test_json_at_the_depth_bound_and_big_but_bounded_numbers_are_still_accepted(
    database_url: str, conn: asyncpg.Connection
) -> None:
    nested = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)  # + the body object + the payload object
    async with _daemon(database_url, conn) as client:
        for value in (nested, "9" * 300, "-1.5e300"):
            body = ('{"task_type":"flaky","payload":{"n":' + value + "}}").encode()
            r = await client.post("/trigger", content=body, headers=auth())
            assert r.status_code == 202, (value[:20], r.status_code, r.text)
        deeper = '{"task_type":"flaky","payload":{"n":' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}}"
        r = await client.post("/trigger", content=deeper.encode(), headers=auth())
        assert r.status_code == 422 and f"{MAX_JSON_DEPTH} levels" in r.json()["error"], r.text
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 3


UNICODE_OR_ODD_DIGITS = ["²", "٣", "\uff11\uff10", "¹²", "5²", "9" * 5000, "1e3", "+5", " 5", "5 ", "0x10", "1_0",
                         "0", "-1", "3.0", "99999999999999999999"]


async def test_query_limits_accept_only_ascii_digits_within_range(
    database_url: str, conn: asyncpg.Connection
) -> None:
    async with _daemon(database_url, conn) as client:
        await _jobs(conn)
        before = await conn.fetchval(FINGERPRINT)
        with capture_logs() as logs:
            for raw in UNICODE_OR_ODD_DIGITS:
                for path, credentials in (("/api/jobs/run", auth()), ("/admin/api/jobs", BEARER)):
                    method = client.post if path == "/api/jobs/run" else client.get
                    r = await method(path, params={"limit": raw}, headers=credentials)
                    assert r.status_code == 422, (path, raw[:20], r.status_code, r.text[:200])
                    assert "limit" in r.json()["error"], r.text[:200]
            assert await conn.fetchval(FINGERPRINT) == before
            r = await client.get("/admin/api/jobs", params={"limit": "1"}, headers=BEARER)
            assert r.status_code == 200 and [j["id"] for j in r.json()["jobs"]] != [], r.text
            r = await client.post("/api/jobs/run", params={"limit": "1000"}, headers=auth())
            assert r.status_code == 200, r.text  # in range, capped at WORKER_RUN_LIMIT_MAX as before
        _no_internal_errors(logs)
