"""Connections: the work pool, single connections, and translation of driver errors at the boundary."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import asyncpg

from worker import jsonvalues
from worker.errors import DatabaseConflict, DatabaseUnavailable

__all__ = ["bounded", "connect", "connection", "create_pool", "is_connection_error", "json_loads", "translate"]

# Errors that mean "the database is not reachable / the connection broke", as opposed to a query's own error.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.InternalClientError,
)


# Refusals while connecting: the server is up but will not take this session now (database being restored or
# renamed, connections disallowed, credentials mid-rotation). The daemon waits these out like an outage.
_REFUSALS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidPasswordError,
)


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.exceptions.InterfaceError) and "another operation is in progress" in str(exc):
        return False
    if isinstance(exc, asyncpg.exceptions.ObjectNotInPrerequisiteStateError):
        return "not currently accepting connections" in str(exc)
    return isinstance(exc, _CONNECTION_ERRORS + _REFUSALS)


@contextlib.contextmanager
def translate() -> Iterator[None]:
    """Turn a broken connection into DatabaseUnavailable; let query errors through."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except BaseException as exc:
        _raise_if_conflict(exc)
        if isinstance(exc, Exception) and is_connection_error(exc):
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}: {exc}") from exc
        raise


def _raise_if_conflict(exc: BaseException) -> None:
    """A deadlock or serialization failure (SQLSTATE 40P01, 40001) becomes DatabaseConflict: retried where
    DatabaseUnavailable is (tests/test_lease_deadlock.py)."""
    if isinstance(exc, (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)):
        raise DatabaseConflict(f"database conflict, retry: {type(exc).__name__}: {exc}") from exc


def json_loads(text: str) -> Any:
    """The jsonb/json decoder of every connection: worker.jsonvalues.loads, which never raises (a stored value
    nothing can decode becomes an `Undecodable` marker, failing its own job and no other)."""
    return jsonvalues.loads(text)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json_loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json_loads, schema="pg_catalog")


def _connect_kwargs(
    *, statement_cache: bool, connect_timeout_s: float, statement_timeout_s: float | None, app: str
) -> dict[str, Any]:
    settings: dict[str, str] = {"application_name": app}
    kwargs: dict[str, Any] = {"timeout": connect_timeout_s, "server_settings": settings}
    if statement_cache:
        if statement_timeout_s:
            settings["statement_timeout"] = str(int(statement_timeout_s * 1000))
    else:
        # Behind a transaction-mode pooler: no named prepared statements, and no session settings (pgbouncer
        # rejects `statement_timeout` as a startup parameter, and a SET would leak to other clients), so the
        # timeout is enforced by the client, which cancels the query on the server when it expires.
        kwargs["statement_cache_size"] = 0
        if statement_timeout_s:
            kwargs["command_timeout"] = statement_timeout_s
    return kwargs


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo. asyncpg's default reset costs a round trip per release
    (UNLISTEN *, RESET ALL, ...); our pooled connections never LISTEN, SET or take session locks."""
    return None


async def create_pool(
    dsn: str,
    *,
    max_size: int = 10,
    min_size: int = 0,
    statement_cache: bool = True,
    connect_timeout_s: float = 5.0,
    statement_timeout_s: float | None = 30.0,
    app: str = "worker",
) -> asyncpg.Pool:
    """A pool that connects lazily (min_size 0 by default), so a database outage at start is not fatal."""
    kwargs = _connect_kwargs(
        statement_cache=statement_cache,
        connect_timeout_s=connect_timeout_s,
        statement_timeout_s=statement_timeout_s,
        app=app,
    )
    async def _connect(*args: Any, **kw: Any) -> asyncpg.Connection:
        # A pool opens connections lazily inside acquire(): a broken path must surface there as
        # DatabaseUnavailable too (callers retry that), not as a raw OSError that crashes their loop.
        with translate():
            return await asyncpg.connect(*args, **kw)

    async def _init(conn: asyncpg.Connection) -> None:
        with translate():
            await _init_connection(conn)

    with translate():
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            connect=_connect,
            init=_init,
            reset=_keep_session,
            max_inactive_connection_lifetime=300.0,
            **kwargs,
        )
    assert pool is not None
    return pool


async def connect(
    dsn: str,
    *,
    statement_cache: bool = True,
    connect_timeout_s: float = 5.0,
    statement_timeout_s: float | None = None,
    app: str = "worker",
) -> asyncpg.Connection:
    kwargs = _connect_kwargs(
        statement_cache=statement_cache,
        connect_timeout_s=connect_timeout_s,
        statement_timeout_s=statement_timeout_s,
        app=app,
    )
    with translate():
        conn = await asyncpg.connect(dsn, **kwargs)
        await _init_connection(conn)
    return conn


@contextlib.asynccontextmanager
async def connection(dsn: str, **kwargs: Any) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(dsn, **kwargs)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=2)


@contextlib.asynccontextmanager
async def bounded(pool: asyncpg.Pool, deadline_s: float) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for one of the daemon's own calls (claim, finish, heartbeat, release, schedules),
    acquired and used under a client-side deadline.

    The server's statement_timeout never fires for a query the server never received (a half-open path), so
    past the deadline the connection is terminated, never handed out again, and the caller gets
    DatabaseUnavailable like any other outage (tests/test_faults_dirty.py: a black-holed work connection in
    poll mode)."""
    with anyio.move_on_after(deadline_s) as scope:
        async with pool.acquire() as conn:
            try:
                yield conn
            except BaseException:
                if scope.cancel_called:
                    conn.terminate()
                raise
    if scope.cancelled_caught:
        raise DatabaseUnavailable(
            f"database unavailable: no connection or no answer within {deadline_s:g}s (connection discarded)"
        )
