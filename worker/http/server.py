"""Serve the HTTP app with uvicorn inside the daemon's own event loop, as one of its supervised loops.

The socket is bound here (so port 0 works and the bound port is known at once: `server.port`), uvicorn's own
signal handling is turned off (the daemon owns SIGTERM/SIGINT), and on cancellation (the daemon stopping) the
server stops gracefully: no new connections, open requests get a few seconds.

Slow clients cannot starve the port (tests/test_http_bounds.py::
test_hundreds_of_stalled_half_requests_do_not_starve_healthz_and_are_disconnected): uvicorn bounds only the idle
time between requests (`timeout_keep_alive`), not the time to send a request's line and headers, so the protocol
here adds that deadline (HEADER_TIMEOUT_S, from the connection's start or the next request's first byte) and keeps
at most MAX_PENDING_CONNECTIONS connections waiting for their headers, closing the oldest to admit a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import anyio
import h11
import structlog
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HEADER_TIMEOUT_S", "MAX_PENDING_CONNECTIONS", "HttpServer", "guarded_protocol"]

HEADER_TIMEOUT_S = 10.0
"""A request's line and headers must arrive within this many seconds (of the connection, or of the first byte of
the next request on a kept-alive one); otherwise the connection is closed."""
MAX_PENDING_CONNECTIONS = 100
"""At most this many connections wait for their headers at once; a new one closes the one waiting longest."""
KEEP_ALIVE_S = 5
"""An idle kept-alive connection is closed after this many seconds (uvicorn's timeout_keep_alive)."""
MAX_HEADER_BYTES = 16 * 1024
"""A request line plus headers longer than this is refused with 400 (h11's max incomplete event size)."""

log = structlog.get_logger("worker.http.server")


class _ToStructlog(logging.Handler):
    """uvicorn logs through the standard library; send its warnings and errors (bad requests from clients,
    protocol errors) to structlog, so they come out as JSON lines and pass through redaction."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        extra = {"exc_info": record.exc_info} if record.exc_info else {}
        structlog.get_logger(record.name).log(record.levelno, "http.server_log", message=message, **extra)


def _route_uvicorn_logs() -> None:
    logger = logging.getLogger("uvicorn")
    if not any(isinstance(h, _ToStructlog) for h in logger.handlers):
        logger.addHandler(_ToStructlog())
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def guarded_protocol(header_timeout_s: float, max_pending: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline for each request's line and headers, and a cap on the connections
    waiting for them (shared by the connections of one server: each call makes a class of its own)."""
    waiting: dict[H11Protocol, None] = {}  # the connections awaiting headers, oldest first

    class GuardedH11Protocol(H11Protocol):
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._track_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._track_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._headers_in()
            super().connection_lost(exc)

        def _track_headers(self) -> None:
            """Armed while the client owes a request's line and headers (h11: their side IDLE), else disarmed."""
            if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
                self._headers_in()
            elif self._header_deadline is None:
                self._header_deadline = self.loop.call_later(header_timeout_s, self._cut_off, "header timeout")
                waiting[self] = None
                while len(waiting) > max_pending:
                    oldest = next(iter(waiting))
                    assert isinstance(oldest, GuardedH11Protocol)
                    oldest._cut_off("too many connections awaiting headers")

        def _headers_in(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None
            waiting.pop(self, None)

        def _cut_off(self, reason: str) -> None:
            self._headers_in()
            if not self.transport.is_closing():
                log.debug("http.slow_client_closed", reason=reason, client=self.client)
                with contextlib.suppress(h11.LocalProtocolError):
                    self.conn.send(h11.ConnectionClosed())
                self.transport.close()

    return GuardedH11Protocol


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the daemon decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    def __init__(self, app: ASGIApp, *, host: str, port: int, stop_timeout_s: float = 5.0) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.stop_timeout_s = stop_timeout_s
        self.port: int | None = None
        """The bound port (known once `listening` is set)."""
        self.listening = anyio.Event()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.requested_port), family=family, backlog=2048)
        sock.setblocking(False)
        return sock

    async def run(self) -> None:
        """Serve until cancelled; then stop gracefully. Raises if the server ends on its own."""
        _route_uvicorn_logs()
        sock = self._bind()
        self.port = int(sock.getsockname()[1])
        self.listening.set()  # the socket accepts connections from here on; uvicorn serves them once started
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", ws="none", server_header=False,
            proxy_headers=False, timeout_graceful_shutdown=max(int(self.stop_timeout_s) - 1, 1),
            http=guarded_protocol(HEADER_TIMEOUT_S, MAX_PENDING_CONNECTIONS), timeout_keep_alive=KEEP_ALIVE_S,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
        server = _EmbeddedServer(config)
        done = anyio.Event()
        log.info("http.listening", host=self.host, port=self.port)
        serve_scope = anyio.CancelScope(shield=True)

        async def _serve() -> None:
            try:
                with serve_scope:
                    await server.serve(sockets=[sock])
            finally:
                sock.close()
                done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(_serve)
            try:
                await done.wait()
            finally:
                server.should_exit = True
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.stop_timeout_s):
                    await done.wait()
                serve_scope.cancel()
                log.info("http.stopped", port=self.port)
        raise RuntimeError("the HTTP server stopped on its own")
