"""A small TCP proxy in front of PostgreSQL for the fault tests, run in a thread of its own (so a test that blocks
does not freeze it) and steered from the test:

    pass        forward both ways (the default; `heal()` returns to it)
    drop        reset every open connection (RST) and reset each new one at once
    blackhole   accept and keep every socket but forward nothing; connections black-holed stay dead (bytes are
                discarded, as after a NAT/firewall state loss) even after healing — only new ones work then
    refuse      close the listening socket (connects are refused) and reset the open connections

`heal()` returns to `pass` (re-opening the listener on the same port after `refuse`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Mode", "TcpProxy"]

Mode = Literal["pass", "drop", "blackhole", "refuse"]


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    dead: bool = False
    """Black-holed: nothing is forwarded any more."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _reset(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.port = 0
        self.connections_total = 0
        self._pairs: set[_Pair] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcpproxy", daemon=True)

    # --- lifecycle (called from the test's thread) -----------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, database_url: str) -> str:
        """`database_url` pointed at this proxy instead of the server."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(database_url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))

    # --- steering --------------------------------------------------------------------------------
    def set_mode(self, mode: Mode) -> None:
        self._call(self._set_mode(mode))

    def drop(self) -> None:
        self.set_mode("drop")

    def blackhole(self) -> None:
        self.set_mode("blackhole")

    def refuse(self) -> None:
        self.set_mode("refuse")

    def heal(self) -> None:
        self.set_mode("pass")

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    # --- inside the proxy's loop -----------------------------------------------------------------
    def _call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_mode(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        if mode in ("drop", "refuse"):
            for pair in list(self._pairs):
                self._kill(pair)
        if mode == "blackhole":
            for pair in self._pairs:
                pair.dead = True
        if mode == "refuse" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if mode != "refuse" and previous == "refuse" and self._server is None:
            await self._listen()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            self._kill(pair)

    def _kill(self, pair: _Pair) -> None:
        _reset(pair.client)
        _reset(pair.upstream)
        for t in pair.tasks:
            t.cancel()
        self._pairs.discard(pair)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        pair = _Pair(writer)
        if self.mode == "drop":
            _reset(writer)
            return
        self._pairs.add(pair)
        if self.mode == "blackhole":
            pair.dead = True
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._kill(pair)
            return
        pair.upstream = up_writer
        if pair not in self._pairs:  # killed while connecting
            _reset(up_writer)
            return
        pair.tasks = [
            asyncio.ensure_future(self._pump(pair, reader, up_writer)),
            asyncio.ensure_future(self._pump(pair, up_reader, writer)),
        ]

    async def _pump(self, pair: _Pair, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                if pair.dead:
                    continue  # black-holed: swallowed
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            if not pair.dead or pair not in self._pairs:
                self._kill(pair)
