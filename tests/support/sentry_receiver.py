"""A tiny local Sentry endpoint: receives the SDK's real envelopes over HTTP (in a thread) for the tests."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SentryReceiver:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                receiver.requests.append((self.path, dict(self.headers.items()), raw))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def dsn(self, key: str = "publickey") -> str:
        return f"http://{key}@127.0.0.1:{self.port}/1"

    def __enter__(self) -> SentryReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def events(self) -> list[dict[str, Any]]:
        """The event items of every envelope received so far."""
        events = []
        for _path, _headers, raw in self.requests:
            lines = raw.split(b"\n")
            i = 1
            while i < len(lines):
                if not lines[i].strip():
                    i += 1
                    continue
                item_header = json.loads(lines[i])
                payload = lines[i + 1]
                if item_header.get("type") == "event":
                    events.append(json.loads(payload))
                i += 2
        return events

    def wait_for_events(self, n: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= n:
                return events
            time.sleep(0.02)
        raise AssertionError(f"expected {n} Sentry events, got {len(self.events())}")
