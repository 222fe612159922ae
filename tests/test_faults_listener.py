"""The LISTEN connection's path failing in dirty ways (issue 17, case 3).

A black hole longer than the probe timeout, then healed: the listener must come back once, not reconnect without
end (each close of an old connection firing asyncpg's termination callback after the new one was installed made
the new one look lost), and `/readyz` must answer 200 again within seconds. A listener whose every new connection
dies at once must back off rather than reconnect in a tight loop.

The process test runs `python -m worker run` with only the LISTEN URL through tests/support/tcpproxy.py (work goes
straight to the server); the in-process tests drive `worker.runtime.listener.Listener` alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import anyio
import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from tests.support.daemon import wait_for
from tests.support.procs import WorkerProcess, worker_env
from tests.support.tcpproxy import TcpProxy
from worker.backoff import RECONNECT_BASE_S, Backoff, reconnect_policy
from worker.runtime.listener import Listener

# worker_env's probe timeout is 1 s: the black hole lasts well past it (and past a connect attempt's 2 s timeout).
BLACKHOLE_S = 3.0
AFTER_HEAL_S = 15.0
ENV = {
    "WORKER_HTTP_ENABLED": "true",
    "WORKER_HTTP_HOST": "127.0.0.1",
    "WORKER_HTTP_PORT": "0",
}


async def _readyz(client: httpx.AsyncClient) -> int:
    try:
        return (await client.get("/readyz")).status_code
    except httpx.HTTPError:
        return 0


async def _sleep_until(moment: float) -> None:
    await anyio.sleep(max(0.0, moment - time.monotonic()))


@pytest.mark.slow
async def test_a_listen_path_black_holed_past_the_probe_timeout_comes_back_once_and_ready(
    database_url: str,
) -> None:
    with TcpProxy() as proxy:
        env = worker_env(database_url, WORKER_LISTEN_DATABASE_URL=proxy.url(database_url), **ENV)
        proc = WorkerProcess(env, name="listen-blackhole")
        try:
            port = await proc.http_port()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

                async def ready() -> bool:
                    return await _readyz(client) == 200

                async def not_ready() -> bool:
                    return await _readyz(client) == 503

                await wait_for(ready, timeout_s=20)
                cut = time.monotonic()
                proxy.blackhole()
                await proc.wait_event("listener.probe_failed", timeout_s=10)
                await wait_for(not_ready, timeout_s=10)
                await _sleep_until(cut + BLACKHOLE_S)

                before = proxy.connections_total
                proxy.heal()
                healed = time.monotonic()
                ready_in = await wait_for(ready, timeout_s=8, interval_s=0.05)
                await _sleep_until(healed + AFTER_HEAL_S)
                new_connections = proxy.connections_total - before
                assert new_connections <= 5, (new_connections, proc.output[-4000:])
                assert await ready(), proc.output[-4000:]
                assert proc.alive, proc.output[-4000:]
                print(
                    f"\nLISTEN black-holed {BLACKHOLE_S:g}s: /readyz 200 {ready_in:.2f}s after healing; "
                    f"{new_connections} new LISTEN connection(s) in the {AFTER_HEAL_S:g}s after healing"
                )
        finally:
            proc.cleanup()


@contextlib.asynccontextmanager
async def _running(listener: Listener) -> AsyncIterator[anyio.Event]:
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.run, stop)
        try:
            yield stop
        finally:
            stop.set()


def _listener(
    dsn: str, *, probe_interval_s: float, probe_timeout_s: float, connect_timeout_s: float,
    reconnect_max_s: float | None = None,
) -> Listener:
    return Listener(
        dsn, wake=lambda _payload: None, probe_interval_s=probe_interval_s, probe_timeout_s=probe_timeout_s,
        connect_timeout_s=connect_timeout_s, reconnect_max_s=reconnect_max_s,
    )


async def test_a_late_termination_callback_of_the_old_connection_does_not_mark_the_new_one_lost(
    database_url: str,
) -> None:
    """A probe that fails on a black-holed path makes the listener drop that connection; asyncpg calls the
    connection's termination callback on the next loop turn, after a new connection may be installed. That late
    call must not count against the new connection: once healed, it reconnects once and stays connected."""
    with TcpProxy() as proxy, capture_logs() as logs:
        listener = _listener(
            proxy.url(database_url), probe_interval_s=0.5, probe_timeout_s=1.0, connect_timeout_s=1.0
        )
        state = listener.state
        async with _running(listener):

            async def probed() -> bool:
                return state.connected and state.probe_age_s() is not None

            await wait_for(probed, timeout_s=10)
            proxy.blackhole()

            async def probe_failed() -> bool:
                return not state.connected

            await wait_for(probe_failed, timeout_s=5)
            await anyio.sleep(1.5)  # connects are black-holed too, and time out
            proxy.heal()

            async def back() -> bool:
                return state.reconnects >= 1 and state.connected

            await wait_for(back, timeout_s=10)
            await anyio.sleep(3.0)  # six probe intervals on the new connection
            assert state.connected
            age = state.probe_age_s()
            assert age is not None and age < 1.5, age
            assert state.reconnects == 1, (state.reconnects, proxy.connections_total)
    lost_after_reconnect = [
        e["event"] for e in logs[[e["event"] for e in logs].index("listener.reconnected"):]
        if e["event"] == "listener.connection_lost"
    ]
    assert lost_after_reconnect == []


async def test_a_listener_whose_new_connections_die_at_once_backs_off_instead_of_reconnecting_in_a_loop(
    database_url: str, conn: asyncpg.Connection
) -> None:
    """For a while every LISTEN backend of this database is terminated as soon as it has answered its first probe:
    each connect succeeds and the connection dies right after, so no connect fails and only a backoff that does
    not start over on every successful connect spaces the attempts."""
    killing_s = 4.0
    with capture_logs() as logs:
        listener = _listener(
            database_url, probe_interval_s=1.0, probe_timeout_s=0.5, connect_timeout_s=2.0, reconnect_max_s=2.0
        )
        async with _running(listener):

            async def connected() -> bool:
                return listener.state.connected

            await wait_for(connected, timeout_s=10)
            killed = 0
            deadline = time.monotonic() + killing_s
            while time.monotonic() < deadline:
                killed += await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'worker-listener' AND datname = current_database() "
                    "AND query LIKE '%pg_notify%'"  # LISTENing and probed once: the connect itself succeeded
                )
                await anyio.sleep(0.01)
            connects = sum(1 for e in logs if e["event"] == "listener.listening")
            assert killed >= 1
            # Exponential backoff from 0.2 s capped at 2 s, +/- 50%: even the shortest delays (0.1, 0.2, 0.4, 0.8,
            # then 1 s each) fit at most seven connects, the first included, into 4 s.
            assert connects <= 8, (connects, killed)
            print(f"\n{killed} LISTEN backends terminated in {killing_s:g}s; {connects} connects")
            await wait_for(connected, timeout_s=5)


async def test_stopping_a_listener_whose_path_is_black_holed_does_not_wait_for_the_dead_connection(
    database_url: str,
) -> None:
    """A graceful close sends Terminate and waits for the server to hang up, which never happens through a black
    hole; stopping must end the connection without waiting (long probe timeout: the probe does not end it)."""
    with TcpProxy() as proxy:
        listener = _listener(
            proxy.url(database_url), probe_interval_s=30.0, probe_timeout_s=20.0, connect_timeout_s=5.0
        )
        stop, returned = anyio.Event(), anyio.Event()

        async def run() -> None:
            await listener.run(stop)
            returned.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)

            async def probed() -> bool:
                return listener.state.connected and listener.state.probe_age_s() is not None

            await wait_for(probed, timeout_s=10)
            proxy.blackhole()
            stop.set()
            stopping = time.monotonic()
            with anyio.move_on_after(10):
                await returned.wait()
            stopped_in = time.monotonic() - stopping
        assert returned.is_set() and not listener.state.connected
        assert stopped_in < 1.0, stopped_in


def test_the_reconnect_backoff_doubles_up_to_its_cap_and_starts_over_after_a_success() -> None:
    backoff = Backoff(reconnect_policy(max_s=1.0))
    assert [backoff.failed(rand=0.5) for _ in range(5)] == [RECONNECT_BASE_S, 0.4, 0.8, 1.0, 1.0]
    backoff.succeeded()
    assert backoff.failed(rand=0.5) == RECONNECT_BASE_S


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
def test_the_reconnect_backoff_is_jittered_by_half_and_never_exceeds_its_cap(rand: float) -> None:
    backoff = Backoff(reconnect_policy(max_s=1.0))
    delays = [backoff.failed(rand=rand) for _ in range(12)]
    assert RECONNECT_BASE_S * 0.5 <= delays[0] <= RECONNECT_BASE_S * 1.5
    assert all(0.5 <= d <= 1.0 for d in delays[3:]), delays

def test_a_reconnect_cap_below_the_base_delay_caps_the_first_delay_too() -> None:
    assert Backoff(reconnect_policy(max_s=0.05)).failed(rand=0.999) <= 0.05
