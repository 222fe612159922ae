"""Bounds at the HTTP edge: JSON nested too deep, numbers too large or not finite, query integers that are not
plain ASCII digits, and clients that never finish sending their request. Every such input is a 4xx with the
endpoint's usual `{"error": ...}` body, nothing is logged as an internal error and no row changes; slow clients
are disconnected and cannot starve /healthz."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
import uvicorn
from structlog.testing import capture_logs

from tests.support.admin import BEARER, admin_daemon, enqueue
from tests.support.hostile import FINGERPRINT
from tests.support.http import SECRET, auth
from tests.support.procs import WorkerProcess, worker_env
from worker import operations, queue
from worker.http import inputs
from worker.http.inputs import MAX_JSON_DEPTH
from worker.http.server import HEADER_TIMEOUT_S, MAX_PENDING_CONNECTIONS, guarded_protocol

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
    await operations.pause(conn)  # nothing runs: every row stays as set, so any change is the request's doing
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


async def test_a_body_that_does_not_arrive_in_time_is_answered_408_and_changes_nothing(
    database_url: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs, "BODY_TIMEOUT_S", 0.5, raising=False)
    async with _daemon(database_url, conn) as client:
        before = await conn.fetchval(FINGERPRINT)
        host, port = client.base_url.host, client.base_url.port
        assert port is not None
        async with await anyio.connect_tcp(host, port) as stream:
            await stream.send(b"POST /trigger HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET.encode()
                              + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                              + b'{"task_type":"noop"')
            with anyio.fail_after(5):
                answer = await stream.receive()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        assert b"did not arrive within" in body, answer
        assert await conn.fetchval(FINGERPRINT) == before


async def test_a_client_that_disconnects_mid_body_is_not_logged_as_an_internal_error(
    database_url: str, conn: asyncpg.Connection
) -> None:
    async with _daemon(database_url, conn) as client:
        before = await conn.fetchval(FINGERPRINT)
        host, port = client.base_url.host, client.base_url.port
        assert port is not None
        with capture_logs() as logs:
            for path, token in (("/trigger", SECRET), ("/admin/api/pause", BEARER["Authorization"][7:])):
                async with await anyio.connect_tcp(host, port) as stream:
                    await stream.send(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                                      "Content-Length: 100\r\n\r\n{\"task_type\":".encode())
                    await anyio.sleep(0.2)
            await anyio.sleep(0.5)
            r = await client.get("/healthz")
        assert r.status_code == 200
        _no_internal_errors(logs)
        assert await conn.fetchval(FINGERPRINT) == before


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


@contextlib.contextmanager
def _descriptor_limit(limit: int) -> Iterator[None]:
    """Processes started inside inherit this soft RLIMIT_NOFILE (the test's own limit is restored at once)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _stall(port: int, count: int) -> list[socket.socket]:
    """`count` connections, opened a few dozen at a time, that send half a request (part of the request line, or
    the line and part of the headers) and then nothing."""
    socks = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Stalled: " if i % 2 else b"GET /heal")
        socks.append(s)
        if i % 25 == 24:
            time.sleep(0.02)
    return socks


def _closed_by_peer(s: socket.socket, deadline: float) -> bool:
    s.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        return s.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_hundreds_of_stalled_half_requests_do_not_starve_healthz_and_are_disconnected(
    database_url: str,
) -> None:
    # A worker with a modest descriptor budget (256, as small containers have): slow clients that are never cut
    # off use it up, after which the kernel queues every new connection, /healthz included, unaccepted.
    assert MAX_PENDING_CONNECTIONS < 200, "the cap must leave room within the budget for the worker's own files"
    env = worker_env(database_url, WORKER_HTTP_ENABLED="true", WORKER_HTTP_HOST="127.0.0.1", WORKER_HTTP_PORT="0")
    with _descriptor_limit(256):
        proc = WorkerProcess(env, name="slow-clients")
    socks: list[socket.socket] = []
    try:
        port = await proc.http_port()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            with anyio.fail_after(20):
                while (await client.get("/healthz")).status_code != 200:
                    await anyio.sleep(0.1)
            socks = await anyio.to_thread.run_sync(_stall, port, 600)
            for _ in range(3):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as fresh:
                    with anyio.fail_after(5):
                        r = await fresh.get("/healthz")
                assert r.status_code == 200, r.text
        # Every stalled connection is cut off: the oldest to make room for new ones, the rest at the header timeout.
        deadline = time.monotonic() + HEADER_TIMEOUT_S + 10
        still_open = [s for s in socks if not await anyio.to_thread.run_sync(_closed_by_peer, s, deadline)]
        assert not still_open, f"{len(still_open)} of {len(socks)} stalled connections still open"
        assert proc.alive and "Traceback" not in proc.output, proc.output[-3000:]
    finally:
        for s in socks:
            s.close()
        proc.cleanup()


async def _asgi_ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def _guarded_server(header_timeout_s: float, max_pending: int) -> AsyncIterator[int]:
    """uvicorn serving a trivial app through the port's protocol, with short bounds; yields the port."""
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(_asgi_ok, log_config=None, lifespan="off", ws="none",
                            http=guarded_protocol(header_timeout_s, max_pending))
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                await anyio.sleep(0.01)
            try:
                yield int(sock.getsockname()[1])
            finally:
                server.should_exit = True
    finally:
        sock.close()


async def _closed_within(stream: anyio.abc.SocketStream, timeout_s: float) -> bool:
    with anyio.move_on_after(timeout_s):
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            return True
    return False


async def test_the_header_deadline_is_not_extended_by_trickled_bytes_and_holds_for_every_request() -> None:
    async with _guarded_server(header_timeout_s=1.0, max_pending=10) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as trickler:
            start = time.monotonic()
            with anyio.move_on_after(5), contextlib.suppress(anyio.BrokenResourceError):
                for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890":
                    await trickler.send(bytes([byte]))  # a byte every 0.2 s: 8 s for the whole line and headers
                    await anyio.sleep(0.2)
            assert await _closed_within(trickler, 1.0), "a client trickling its headers was not cut off"
            assert time.monotonic() - start < 5, "the deadline moved with each byte"
        # A kept-alive connection: the first request is answered, a stalled second one is cut off in turn.
        async with await anyio.connect_tcp("127.0.0.1", port) as kept:
            await kept.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"200 OK" in await kept.receive()
            await kept.send(b"GET / HTTP/1.1\r\nHo")
            assert await _closed_within(kept, 3.0), "a stalled second request on a kept-alive connection stayed open"


async def test_a_new_connection_closes_the_one_waiting_longest_for_its_headers_beyond_the_cap() -> None:
    async with _guarded_server(header_timeout_s=30.0, max_pending=3) as port, contextlib.AsyncExitStack() as stack:
        stalled = []
        for _ in range(5):
            stream = await stack.enter_async_context(await anyio.connect_tcp("127.0.0.1", port))
            await stream.send(b"GET / HTTP/1.1\r\n")
            stalled.append(stream)
            await anyio.sleep(0.05)
        fresh = await stack.enter_async_context(await anyio.connect_tcp("127.0.0.1", port))
        await fresh.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in await fresh.receive()
        closed = [await _closed_within(s, 0.5) for s in stalled]
        assert closed == [True, True, True, False, False], closed  # the three oldest made room for 4, 5, fresh
