"""The admin page at /admin: HTML pages (pages.py) over a JSON API (api.py), behind the admin
token (auth.py). Mounted by the HTTP app only when WORKER_ADMIN_TOKEN is set; otherwise /admin is 404."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Mount

from worker.http.admin.api import AdminContext, api_routes
from worker.http.admin.auth import AdminAuth
from worker.http.admin.data import Overview
from worker.http.admin.pages import page_routes

if TYPE_CHECKING:
    from worker.runtime.daemon import Daemon

__all__ = ["admin_mount"]


def admin_mount(daemon: Daemon, token: str) -> Mount:
    ctx = AdminContext(daemon=daemon, auth=AdminAuth(token), overview=Overview(daemon))
    return Mount("/admin", routes=[*api_routes(ctx), *page_routes(ctx)])
