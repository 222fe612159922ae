"""The daemon's HTTP port: the Starlette app (`app.create_app`) and its embedded uvicorn server."""

from __future__ import annotations

from worker.http.app import create_app
from worker.http.server import HttpServer

__all__ = ["HttpServer", "create_app"]
