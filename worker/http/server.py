"""Serve the HTTP app with uvicorn inside the daemon's own event loop, as one of its supervised loops.

The socket is bound here (so port 0 works and the bound port is known at once: `server.port`), uvicorn's own
signal handling is turned off (the daemon owns SIGTERM/SIGINT), and on cancellation (the daemon stopping) the
server stops gracefully: no new connections, open requests get a few seconds.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Generator

import anyio
import structlog
import uvicorn
from starlette.types import ASGIApp

__all__ = ["HttpServer"]

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
