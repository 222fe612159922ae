"""The admin page at /admin: HTML pages (admin_pages.py) over a JSON API (admin_api.py), behind the admin
token (admin_auth.py). Mounted by the HTTP app only when WORKER_ADMIN_TOKEN is set; otherwise /admin is 404."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Mount

from worker.http.admin_api import AdminContext, api_routes
from worker.http.admin_auth import AdminAuth
from worker.http.admin_data import Overview
from worker.http.admin_pages import page_routes

if TYPE_CHECKING:
    from worker.daemon import Daemon

__all__ = ["admin_mount"]


def admin_mount(daemon: Daemon, token: str) -> Mount:
    ctx = AdminContext(daemon=daemon, auth=AdminAuth(token), overview=Overview(daemon))
    return Mount("/admin", routes=[*api_routes(ctx), *page_routes(ctx)])
