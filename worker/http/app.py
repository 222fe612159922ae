"""The daemon's HTTP port (Starlette): probes, the cron trigger, the seed's `/api/jobs/run`, and metrics.

Bad input is always a 4xx with a JSON `{"error": ...}` naming the problem and changes nothing: malformed JSON
400, missing or wrong bearer token 401 (no detail), body not received within 10 s 408, body over 64 KiB 413,
JSON nested too deep or numbers out of bounds / unknown task type / invalid payload / invalid field 422, wrong
method 405. No runner secret configured: the guarded endpoints answer 503. Bodies and query integers are read
through worker/http/inputs.py (the bounds are listed there).
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from worker import db, queue
from worker.errors import DatabaseUnavailable, InvalidInput, JobNotFound, JobStateConflict
from worker.http.inputs import MAX_BODY_BYTES, HttpProblem, query_int, read_json_object
from worker.http.runjobs import run_jobs
from worker.metrics import CONTENT_TYPE, Metrics
from worker.migrate import schema_status
from worker.sql import queries
from worker.tasks import format_validation_error

if TYPE_CHECKING:
    from worker.runtime.daemon import Daemon

__all__ = ["MAX_BODY_BYTES", "HttpProblem", "create_app"]

PROBE_TIMEOUT_S = 2.0
MAX_LIMIT = 2**31 - 1
"""The largest `limit` /api/jobs/run accepts (query or body); within it, WORKER_RUN_LIMIT_MAX caps the run."""

log = structlog.get_logger("worker.http")
_Q = queries("health")

Endpoint = Callable[[Request], Awaitable[Response]]


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_type: str | None = None
    payload: dict[str, Any] | None = None
    dedupe_key: str | None = Field(default=None, min_length=1, max_length=255)


class RunBody(BaseModel):
    """Unknown keys are ignored: the seed's cron sends a minimal body of its own."""

    model_config = ConfigDict(extra="ignore")

    limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    ids: list[uuid.UUID] | None = Field(default=None, min_length=1)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def describe_failure(exc: Exception, request: Request, area: str) -> tuple[int, str, dict[str, str] | None]:
    """The one mapping of failures to answers, for every route of the port (the admin API included): bad input
    4xx (unknown job 404, a state that forbids the action 409), database down 503, a bug 500 (logged)."""
    if isinstance(exc, HttpProblem):
        return exc.status, exc.message, exc.headers
    if isinstance(exc, JobNotFound):
        return 404, str(exc), None
    if isinstance(exc, JobStateConflict):
        return 409, str(exc), None
    if isinstance(exc, InvalidInput):
        return 422, str(exc), None
    if isinstance(exc, DatabaseUnavailable):
        log.warning(f"{area}.database_unavailable", path=request.url.path, error=str(exc))
        return 503, "database unavailable", None
    log.error(f"{area}.internal_error", path=request.url.path, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
    return 500, "internal error", None


def _guarded(fn: Endpoint) -> Endpoint:
    """Turn every failure into a JSON answer (see describe_failure)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except Exception as exc:
            return _error(*describe_failure(exc, request, "http"))

    return endpoint


def _model(model: type[BaseModel], body: dict[str, Any] | None) -> Any:
    try:
        return model.model_validate(body or {})
    except ValidationError as exc:
        raise HttpProblem(422, f"invalid body: {format_validation_error(exc)}") from None


def create_app(
    daemon: Daemon, *, metrics: Metrics | None = None, extra_routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """The app of this daemon. `extra_routes` (e.g. the admin page) are mounted after the built-in ones."""
    settings = daemon.settings

    def authorize(request: Request) -> None:
        secrets = settings.runner_secrets()
        if not secrets:
            raise HttpProblem(503, "no runner secret is configured (JOB_QUEUE_RUNNER_SECRET)")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        supplied = token.strip().encode()
        ok = False
        for secret in secrets:  # compare with every secret, so the time does not tell which one matched
            ok = hmac.compare_digest(supplied, secret) | ok
        if scheme.lower() != "bearer" or not supplied or not ok:
            client = request.client.host if request.client else None
            log.warning("http.unauthorized", path=request.url.path, client=client)
            raise HttpProblem(401, "unauthorized", {"WWW-Authenticate": "Bearer"})

    async def healthz(request: Request) -> Response:
        loops = dict(daemon.alive)
        if daemon.stop_event.is_set():
            return JSONResponse({"status": "stopping", "loops": loops})
        dead = sorted(name for name, alive in loops.items() if not alive)
        fetcher = daemon.fetch_state()
        if fetcher["hung"]:
            dead.append("fetcher")
        if not daemon.started.is_set() or dead:
            return JSONResponse(
                {"status": "unhealthy", "dead_loops": dead, "loops": loops, "fetcher": fetcher}, status_code=503
            )
        return JSONResponse({"status": "ok", "loops": loops, "fetcher": fetcher})

    async def readyz(request: Request) -> Response:
        checks: dict[str, dict[str, Any]] = {}
        try:
            with anyio.fail_after(PROBE_TIMEOUT_S + 1):  # the pool's own deadline discards a hung connection
                async with db.bounded(daemon.pool, PROBE_TIMEOUT_S) as conn:
                    await conn.fetchval(_Q["ping"])
                    checks["database"] = {"ok": True}
                    status = await schema_status(conn)
            checks["schema"] = {"ok": status.up_to_date, "current": status.current, "latest": status.latest}
            if not status.up_to_date:
                checks["schema"]["error"] = f"schema at version {status.current}, needs {status.latest}"
        except Exception as exc:
            error = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            checks.setdefault("database", {"ok": False, "error": error})
            checks.setdefault("schema", {"ok": False, "error": "database unavailable"})
        if daemon.listener is None:
            checks["listener"] = {"ok": True, "skipped": "LISTEN is disabled (poll-only mode)"}
        else:
            state = daemon.listener.state
            age = state.probe_age_s()
            max_age = settings.readyz_probe_max_age_s
            listener: dict[str, Any] = {
                "ok": state.connected and age is not None and age < max_age,
                "connected": state.connected,
                "probe_age_s": None if age is None else round(age, 3),
            }
            if not listener["ok"]:
                listener["error"] = (
                    "not connected" if not state.connected
                    else "no NOTIFY round trip yet" if age is None
                    else f"last NOTIFY round trip is older than {max_age:g}s"
                )
                if state.last_error:
                    listener["last_error"] = state.last_error
            checks["listener"] = listener
        fetcher = daemon.fetch_state()
        checks["fetcher"] = {"ok": not fetcher["stalled"], **fetcher}
        if fetcher["stalled"]:
            checks["fetcher"]["error"] = f"no claim has succeeded for {fetcher['no_claim_for_s']:g}s"
        checks["daemon"] = {"ok": daemon.started.is_set() and not daemon.stop_event.is_set()}
        if not checks["daemon"]["ok"]:
            checks["daemon"]["error"] = "stopping" if daemon.stop_event.is_set() else "starting"
        failing = sorted(name for name, check in checks.items() if not check["ok"])
        body = {"status": "not ready" if failing else "ready", "failing": failing, "checks": checks}
        return JSONResponse(body, status_code=503 if failing else 200)

    async def trigger(request: Request) -> Response:
        authorize(request)
        body: TriggerBody = _model(TriggerBody, await read_json_object(request))
        enqueued: queue.Enqueued | None = None
        if body.task_type is None:
            if body.payload is not None or body.dedupe_key is not None:
                raise HttpProblem(422, "task_type is required when payload or dedupe_key is given")
        else:
            payload = body.payload or {}
            daemon.registry.validate(body.task_type, payload)
            task = daemon.registry.get(body.task_type)
            new = queue.NewJob(
                task_type=body.task_type, payload=payload, dedupe_key=body.dedupe_key, priority=task.priority,
                max_attempts=task.max_attempts or settings.default_max_attempts,
            )
            async with daemon.pool.acquire() as conn:
                enqueued = await queue.enqueue(conn, new)
            log.info("http.trigger_enqueued", job_id=str(enqueued.id), task_type=body.task_type,
                     created=enqueued.created)
        daemon.wake()
        async with daemon.pool.acquire() as conn:
            depth = await queue.queue_depth(conn)
        answer: dict[str, Any] = {"status": "accepted", "queue_depth": depth}
        if enqueued is not None:
            answer["job_id"] = str(enqueued.id)
            answer["created"] = enqueued.created
        return JSONResponse(answer, status_code=202)

    async def jobs_run(request: Request) -> Response:
        authorize(request)
        body: RunBody = _model(RunBody, await read_json_object(request))
        limit = body.limit
        if limit is None:
            limit = query_int(request.query_params.get("limit"), name="limit", minimum=1, maximum=MAX_LIMIT)
        if body.ids is not None and len(body.ids) > settings.run_limit_max:
            raise HttpProblem(422, f"at most {settings.run_limit_max} ids at once")
        limit = min(limit or (len(body.ids) if body.ids else 10), settings.run_limit_max)
        if daemon.stop_event.is_set():
            raise HttpProblem(503, "the worker is stopping")
        report = await run_jobs(daemon, limit=limit, ids=body.ids)
        return JSONResponse(report.as_json())

    async def metrics_endpoint(request: Request) -> Response:
        if metrics is None:
            raise HttpProblem(404, "metrics are not enabled")
        await metrics.refresh(daemon.pool, timeout_s=PROBE_TIMEOUT_S)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    routes = [
        Route("/healthz", _guarded(healthz), methods=["GET"]),
        Route("/readyz", _guarded(readyz), methods=["GET"]),
        Route("/trigger", _guarded(trigger), methods=["POST"]),
        Route("/api/jobs/run", _guarded(jobs_run), methods=["POST"]),
        Route("/metrics", _guarded(metrics_endpoint), methods=["GET"]),
        *extra_routes,
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
