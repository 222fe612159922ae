"""The JSON admin API under /admin/api (documented in docs/admin-api.md); the admin page uses it too.

Every action goes through the same operations as the CLI: queue.retry_now / queue.cancel (`worker jobs
retry|cancel ID...`), operations.archive_ids (`worker jobs archive ID...`), operations.pause / resume, and run-now
claims the job explicitly like `/api/jobs/run` with ids. Bad input is a 4xx `{"error": ...}` and changes
nothing: 400 malformed JSON, 401 not signed in, 403 CSRF, 404 unknown job, 408 body too slow, 409 a state that
forbids the action, 413 body too large, 422 invalid field (or JSON beyond the bounds of worker/http/inputs.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker import history, nodes, operations, queue
from worker.errors import InvalidInput, JobStateConflict
from worker.http.admin.auth import AdminAuth, Principal
from worker.http.admin.data import (
    FILTER_KEYS,
    MAX_BULK,
    JobFilter,
    Overview,
    dumps,
    job_detail,
    list_jobs,
    parse_limit,
    select_ids,
)
from worker.http.app import describe_failure
from worker.http.inputs import HttpProblem, read_json_object
from worker.http.runjobs import run_jobs
from worker.sql import queries
from worker.statuses import ACTIVE

if TYPE_CHECKING:
    from worker.runtime.daemon import Daemon

__all__ = ["AdminContext", "api_routes", "json_response"]

log = structlog.get_logger("worker.http.admin")
_STATS = queries("stats")

Handler = Callable[[Request, Principal], Awaitable[Response]]

# action -> (the statuses a filtered selection must name, what the action does)
BULK_STATUSES = {
    "retry": ("failed", "cancelled"),
    "cancel": ACTIVE,
    "archive": operations.FINISHED,
}


@dataclass(frozen=True, slots=True)
class AdminContext:
    daemon: Daemon
    auth: AdminAuth
    overview: Overview


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    all_headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **(headers or {})}
    return Response(dumps(body), status_code=status, media_type="application/json", headers=all_headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def api_endpoint(ctx: AdminContext, fn: Handler, *, mutates: bool) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate (401), check CSRF on state changes (403), map failures to 4xx/503; a bug is a logged 500."""

    async def endpoint(request: Request) -> Response:
        principal = ctx.auth.principal(request)
        if principal is None:
            log.warning("admin.unauthorized", path=request.url.path)
            return _error(401, "unauthorized", {"WWW-Authenticate": "Bearer"})
        if mutates:
            problem = ctx.auth.csrf_problem(request, principal)
            if problem:
                log.warning("admin.csrf_refused", path=request.url.path, reason=problem)
                return _error(403, problem)
        try:
            return await fn(request, principal)
        except Exception as exc:
            return _error(*describe_failure(exc, request, "admin"))

    return endpoint


def _path_id(request: Request) -> uuid.UUID:
    return queue.parse_job_id(request.path_params["job_id"])


def _who(request: Request, principal: Principal) -> str:
    client = request.client.host if request.client else "?"
    return f"admin:{principal.kind}@{client}"


def _optional_text(body: dict[str, Any], key: str, max_len: int = 1000) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidInput(f"{key} must be a string of at most {max_len} characters")
    return value.strip() or None


def _only_keys(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)} (allowed: {', '.join(allowed)})")


async def operator_view_workers(conn: Any) -> dict[str, Any]:
    """The Workers panel: live workers and the task types with due jobs that no live worker handles."""
    return {"workers": await nodes.live_workers(conn), "unserved": await nodes.unserved_task_types(conn),
            "gone_after_leases": nodes.GONE_LEASES}


def api_routes(ctx: AdminContext) -> list[Route]:
    daemon = ctx.daemon

    async def overview(request: Request, principal: Principal) -> Response:
        async with daemon.pool.acquire() as conn:
            return json_response(await ctx.overview.read(conn))

    async def jobs(request: Request, principal: Principal) -> Response:
        params = request.query_params
        unknown = sorted(set(params) - {*FILTER_KEYS, "limit", "cursor"})
        if unknown:
            raise InvalidInput(f"unknown parameter(s): {', '.join(unknown)}")
        flt = JobFilter.parse(params)
        limit = parse_limit(params.get("limit"))
        async with daemon.pool.acquire() as conn:
            page = await list_jobs(conn, flt, limit=limit, cursor=params.get("cursor") or None)
        return json_response({"filter": flt.as_json(), **page})

    async def job(request: Request, principal: Principal) -> Response:
        job_id = _path_id(request)
        async with daemon.pool.acquire() as conn:
            return json_response(await job_detail(conn, job_id))

    async def act(action: str, ids: list[uuid.UUID], body: dict[str, Any], who: str) -> dict[str, Any]:
        async with daemon.pool.acquire() as conn:
            if action == "retry":
                done = await queue.retry_now(conn, ids)
                out: dict[str, Any] = {"retried": done, "count": len(done)}
            elif action == "cancel":
                done = await queue.cancel(conn, ids, _optional_text(body, "reason") or f"cancelled by {who}")
                out = {"cancelled": done, "count": len(done)}
            else:
                jobs_moved, runs_moved = await operations.archive_ids(conn, ids)
                out = {"archived": ids, "count": jobs_moved, "archived_runs": runs_moved}
        if action == "retry" and out["count"]:
            daemon.wake()
        log.info(f"admin.{action}", by=who, count=out["count"], job_ids=[str(i) for i in ids[:20]])
        return {"action": action, **out}

    def one(action: str) -> Handler:
        async def handler(request: Request, principal: Principal) -> Response:
            job_id = _path_id(request)
            body = await read_json_object(request) or {}
            _only_keys(body, ("reason",) if action == "cancel" else ())
            return json_response(await act(action, [job_id], body, _who(request, principal)))
        return handler

    def bulk(action: str) -> Handler:
        async def handler(request: Request, principal: Principal) -> Response:
            body = await read_json_object(request) or {}
            _only_keys(body, ("ids", "filter", "reason") if action == "cancel" else ("ids", "filter"))
            if ("ids" in body) == ("filter" in body):
                raise InvalidInput('give either "ids" (a list of job ids) or "filter" (an object), not both')
            more = False
            if "ids" in body:
                raw = body["ids"]
                if not isinstance(raw, list) or not raw or len(raw) > MAX_BULK:
                    raise InvalidInput(f"ids must be a list of 1 to {MAX_BULK} job ids")
                ids = list(dict.fromkeys(queue.parse_job_id(v) for v in raw))
            else:
                if not isinstance(body["filter"], dict):
                    raise InvalidInput("filter must be an object")
                _only_keys(body["filter"], FILTER_KEYS)
                flt = JobFilter.parse(body["filter"])
                allowed = BULK_STATUSES[action]
                if flt.status not in allowed:
                    raise InvalidInput(f"to {action} a filtered selection, filter.status must be one of "
                                       f"{', '.join(allowed)}")
                async with daemon.pool.acquire() as conn:
                    ids, more = await select_ids(conn, flt)
                if not ids:
                    return json_response({"action": action, "count": 0, "matched": 0, "more": False})
            out = await act(action, ids, body, _who(request, principal))
            return json_response({**out, "matched": len(ids), "more": more})
        return handler

    async def run_now(request: Request, principal: Principal) -> Response:
        job_id = _path_id(request)
        body = await read_json_object(request) or {}
        _only_keys(body, ())
        async with daemon.pool.acquire() as conn:
            row = await queue.get_job(conn, job_id)
        if row["status"] != "pending":
            raise JobStateConflict(f"cannot run job {job_id} now: it is {row['status']} (only pending jobs; "
                                   "retry a failed one first)")
        if row["task_type"] not in daemon.registry:
            raise JobStateConflict(f"cannot run job {job_id} here: no handler for {row['task_type']!r}")
        if daemon.stop_event.is_set():
            raise HttpProblem(503, "the worker is stopping")
        report = await run_jobs(daemon, limit=1, ids=[job_id])
        if not report.results:
            raise JobStateConflict(f"cannot run job {job_id} now: another worker claimed it first")
        log.info("admin.run_now", by=_who(request, principal), job_id=str(job_id))
        return json_response({"action": "run-now", **report.results[0]})

    async def pause_or_resume(request: Request, principal: Principal, *, pause: bool) -> Response:
        body = await read_json_object(request) or {}
        _only_keys(body, ("task_type", "reason") if pause else ("task_type",))
        task_type = body.get("task_type", operations.ALL_TASK_TYPES)
        if not isinstance(task_type, str):
            raise InvalidInput('task_type must be a string ("*" = every task type)')
        who = _who(request, principal)
        async with daemon.pool.acquire() as conn:
            if pause:
                if task_type != operations.ALL_TASK_TYPES and task_type not in daemon.registry:
                    raise InvalidInput(f"unknown task type {task_type!r} (known: {', '.join(daemon.registry.names())})")
                flag = await operations.pause(conn, task_type, by=who, reason=_optional_text(body, "reason"))
                log.info("admin.pause", by=who, task_type=task_type)
                return json_response({"action": "pause", "paused": flag})
            resumed = await operations.resume(conn, task_type)
        daemon.wake()
        log.info("admin.resume", by=who, task_type=task_type, resumed=resumed)
        return json_response({"action": "resume", "task_type": task_type, "resumed": resumed})

    async def pause(request: Request, principal: Principal) -> Response:
        return await pause_or_resume(request, principal, pause=True)

    async def resume(request: Request, principal: Principal) -> Response:
        return await pause_or_resume(request, principal, pause=False)

    async def workers(request: Request, principal: Principal) -> Response:
        _only_keys(dict(request.query_params), ())
        async with daemon.pool.acquire() as conn:
            return json_response(await operator_view_workers(conn))

    async def history_charts(request: Request, principal: Principal) -> Response:
        params = dict(request.query_params)
        _only_keys(params, ("window", "task_type"))
        window = history.parse_window(params.get("window"))
        task_type = params.get("task_type") or None
        if task_type is not None:
            queue.validate_task_type(task_type)
        async with daemon.pool.acquire() as conn:
            now = await conn.fetchval(_STATS["db_now"])
            return json_response(await history.charts(conn, now, window, task_type))

    async def schedules(request: Request, principal: Principal) -> Response:
        _only_keys(dict(request.query_params), ())
        async with daemon.pool.acquire() as conn:
            now = await conn.fetchval(_STATS["db_now"])
            tracks = await history.track_records(
                conn, daemon.settings, now, registry=daemon.registry, handled=daemon.registry.names()
            )
        return json_response({"now": now, "schedules": tracks})

    def get(path: str, fn: Handler) -> Route:
        return Route(path, api_endpoint(ctx, fn, mutates=False), methods=["GET"])

    def post(path: str, fn: Handler) -> Route:
        return Route(path, api_endpoint(ctx, fn, mutates=True), methods=["POST"])

    return [
        get("/api/overview", overview),
        get("/api/workers", workers),
        get("/api/history", history_charts),
        get("/api/schedules", schedules),
        get("/api/jobs", jobs),
        post("/api/jobs/retry", bulk("retry")),
        post("/api/jobs/cancel", bulk("cancel")),
        post("/api/jobs/archive", bulk("archive")),
        get("/api/jobs/{job_id}", job),
        post("/api/jobs/{job_id}/retry", one("retry")),
        post("/api/jobs/{job_id}/cancel", one("cancel")),
        post("/api/jobs/{job_id}/archive", one("archive")),
        post("/api/jobs/{job_id}/run-now", run_now),
        post("/api/pause", pause),
        post("/api/resume", resume),
    ]
