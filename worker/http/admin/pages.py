"""The admin page's HTML: sign-in, the overview with the job list, one job. Server-rendered from Jinja2
templates (autoescaped); worker/http/admin/static/admin.js then refreshes them every 2 s from the JSON API and
sends the actions to it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from worker import history, queue
from worker.errors import DatabaseUnavailable, InvalidInput, JobNotFound
from worker.http.admin.api import AdminContext, operator_view_workers
from worker.http.admin.auth import Principal, same_origin_problem
from worker.http.admin.data import FILTER_KEYS, JobFilter, job_detail, list_jobs
from worker.http.inputs import HttpProblem, read_body
from worker.jsonvalues import json_default
from worker.statuses import STATUSES

__all__ = ["page_routes"]

log = structlog.get_logger("worker.http.admin")
HERE = Path(__file__).resolve().parent
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _fmt_time(value: Any) -> str:
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, default=json_default, ensure_ascii=False)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["time"] = _fmt_time
    env.filters["pretty"] = _pretty
    return env


def page_routes(ctx: AdminContext) -> list[BaseRoute]:
    env = _environment()
    auth = ctx.auth
    daemon = ctx.daemon

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(name).render(**values)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def signed_in(request: Request) -> str | None:
        return auth.session_id(request)

    async def login_form(request: Request) -> Response:
        if signed_in(request):
            return RedirectResponse("/admin/", status_code=303)
        return render("login.html")

    async def login(request: Request) -> Response:
        if same_origin_problem(request):
            return render("login.html", status=403, message="Sign-in refused: cross-site request.")
        try:
            form = parse_qs((await read_body(request)).decode("utf-8", "replace"), max_num_fields=10)
        except (HttpProblem, ValueError):
            return render("login.html", status=400, message="Sign-in failed.")
        supplied = (form.get("token") or [""])[0]
        if not supplied or not auth.token_matches(supplied):
            client = request.client.host if request.client else None
            log.warning("admin.sign_in_failed", client=client)
            return render("login.html", status=401, message="Sign-in failed.")
        response = RedirectResponse("/admin/", status_code=303)
        auth.start_session(response, secure=request.url.scheme == "https")
        log.info("admin.signed_in", client=request.client.host if request.client else None)
        return response

    async def logout(request: Request) -> Response:
        sid = signed_in(request)
        if sid:
            try:
                form = parse_qs((await read_body(request)).decode("utf-8", "replace"), max_num_fields=10)
            except (HttpProblem, ValueError):
                form = {}
            problem = auth.csrf_problem(request, Principal("cookie", sid), (form.get("csrf_token") or [""])[0])
            if problem:
                return HTMLResponse(problem, status_code=403, headers=PAGE_HEADERS)
        response = RedirectResponse("/admin/login", status_code=303)
        auth.end_session(response)
        return response

    async def overview(request: Request) -> Response:
        sid = signed_in(request)
        if not sid:
            return RedirectResponse("/admin/login", status_code=303)
        params = {k: request.query_params.get(k, "") for k in FILTER_KEYS}
        error = None
        try:
            flt = JobFilter.parse(params)
        except InvalidInput as exc:
            error, flt = str(exc), JobFilter()
        try:
            async with daemon.pool.acquire() as conn:
                data = await ctx.overview.read(conn)
                page = await list_jobs(conn, flt, limit=50)
                fleet = await operator_view_workers(conn)
                tracks = await history.track_records(conn, daemon.settings, data["now"], registry=daemon.registry,
                                                     handled=daemon.registry.names())
        except DatabaseUnavailable:
            return render("error.html", status=503, message="The database is unavailable; try again shortly.")
        return render("overview.html", csrf=auth.csrf_token(sid), o=data, page=page, params=params,
                      filter_error=error, statuses=STATUSES,
                      fleet=fleet, tracks=tracks, windows=list(history.WINDOWS))

    async def job_page(request: Request) -> Response:
        sid = signed_in(request)
        if not sid:
            return RedirectResponse("/admin/login", status_code=303)
        try:
            job_id = queue.parse_job_id(request.path_params["job_id"])
            async with daemon.pool.acquire() as conn:
                job = await job_detail(conn, job_id)
        except JobNotFound as exc:
            return render("error.html", status=404, message=f"{exc} (archived, cleaned up or never existed).")
        except InvalidInput as exc:
            return render("error.html", status=404, message=str(exc))
        except DatabaseUnavailable:
            return render("error.html", status=503, message="The database is unavailable; try again shortly.")
        return render("job.html", csrf=auth.csrf_token(sid), job=job)

    return [
        Route("/", overview, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/jobs/{job_id}", job_page, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="admin-static"),
    ]
