"""`worker doctor`: the troubleshooting checklist as checks, each pass / warn / fail with the figure behind it.

Checks: database reachable; migrations current; NOTIFY round trip; running jobs with expired leases; age of the
oldest due pending job (paused task types excluded); failures in the last hour per task type; paused task
types; schedules and their last enqueue; autovacuum on for the queue's tables; pg_cron jobs and pg_net
backlog where those schemas exist; and, with a URL, the daemon's /readyz.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
import asyncpg
import httpx

from worker import db
from worker.errors import DatabaseUnavailable
from worker.migrate import schema_status
from worker.operations import paused
from worker.schedules import schedules_of
from worker.settings import Settings
from worker.sql import migration_files, queries
from worker.task_policy import apply_overrides
from worker.tasks import Registry

__all__ = ["Check", "failed", "run_checks"]

Status = Literal["pass", "warn", "fail"]
_Q = queries("operator")

NOTIFY_WARN_S = 1.0
LEASE_FAIL_S = 300.0
PENDING_WARN_S = 60.0
PENDING_FAIL_S = 900.0
SCHEDULE_GRACE_S = 300.0
NET_BACKLOG_WARN = 1000


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    figure: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def failed(checks: list[Check]) -> bool:
    return any(c.status == "fail" for c in checks)


async def run_checks(settings: Settings, registry: Registry, *, url: str | None = None) -> list[Check]:
    checks: list[Check] = []
    started = time.monotonic()
    try:
        conn = await db.connect(settings.dsn, connect_timeout_s=settings.db_connect_timeout_s, app="worker-doctor")
    except (DatabaseUnavailable, asyncpg.PostgresError) as exc:
        checks.append(Check("database", "fail", "unreachable", f"{type(exc).__name__}: {exc}"))
    else:
        try:
            version = await conn.fetchval(_Q["server_version"])
            ms = (time.monotonic() - started) * 1000
            checks.append(Check("database", "pass", f"connected in {ms:.0f} ms", f"PostgreSQL {version}"))
            checks.append(await _migrations(conn))
            checks.append(await _notify(settings))
            if checks[1].status != "fail":
                checks.extend(await _queue_checks(conn, settings, registry))
                checks.append(await _live_workers(conn))
            checks.extend(await _extensions(conn))
        except DatabaseUnavailable as exc:
            checks.append(Check("database", "fail", "connection lost", str(exc)))
        finally:
            await conn.close()
    if url is not None:
        checks.append(await _readyz(url, settings.db_connect_timeout_s))
    return checks


async def _migrations(conn: asyncpg.Connection) -> Check:
    status = await schema_status(conn)
    wanted = {v for v, _, _ in migration_files()}
    missing = sorted(wanted - set(status.applied))
    if missing:
        return Check(
            "migrations", "fail", f"missing {', '.join(f'{v:03d}' for v in missing)}",
            "run `worker migrate` before starting this version",
        )
    unknown = sorted(set(status.applied) - wanted)
    if unknown:
        return Check("migrations", "warn", f"version {status.current} (newer than this code)",
                     "the database was migrated by a newer worker; upgrade this one")
    return Check("migrations", "pass", f"version {status.current}")


async def _notify(settings: Settings) -> Check:
    """A NOTIFY round trip on a fresh LISTEN connection to the listen URL."""
    if not settings.listen_enabled:
        return Check("notify", "warn", "LISTEN disabled", "poll-only mode: wake-ups wait for the poll interval")
    channel, token = "job_queue_probe", uuid.uuid4().hex
    arrived = anyio.Event()

    def on_note(_c: Any, _pid: int, _ch: str, payload: str) -> None:
        if payload == token:
            arrived.set()

    try:
        conn = await db.connect(settings.listen_dsn, connect_timeout_s=settings.db_connect_timeout_s,
                                app="worker-doctor")
    except (DatabaseUnavailable, asyncpg.PostgresError) as exc:
        return Check("notify", "fail", "listen URL unreachable", f"{type(exc).__name__}: {exc}")
    try:
        with db.translate():
            await conn.add_listener(channel, on_note)
            started = time.monotonic()
            await conn.execute(queries("listener")["probe"], channel, token)
        with anyio.move_on_after(settings.listen_probe_timeout_s):
            await arrived.wait()
        rtt = time.monotonic() - started
    finally:
        await conn.close()
    if not arrived.is_set():
        return Check("notify", "fail", f"no round trip in {settings.listen_probe_timeout_s:g} s",
                     "LISTEN does not receive NOTIFY: a transaction-mode pooler? set WORKER_LISTEN_DATABASE_URL")
    figure = f"{rtt * 1000:.1f} ms"
    if rtt > NOTIFY_WARN_S:
        return Check("notify", "warn", figure, "slow round trip")
    return Check("notify", "pass", figure)


async def _queue_checks(conn: asyncpg.Connection, settings: Settings, registry: Registry) -> list[Check]:
    out: list[Check] = []
    row = await conn.fetchrow(_Q["expired_leases"])
    n, oldest = int(row["n"]), float(row["oldest_s"] or 0)
    if n == 0:
        out.append(Check("expired_leases", "pass", "0 running jobs past their lease"))
    else:
        status: Status = "fail" if oldest > max(LEASE_FAIL_S, 4 * settings.recovery_interval_s) else "warn"
        out.append(Check("expired_leases", status, f"{n} running past their lease, oldest {oldest:.0f} s",
                         "no daemon is recovering leases: is any daemon running?"))
    row = await conn.fetchrow(_Q["oldest_due_pending"])
    age, due = float(row["age_s"] or 0), int(row["n"])
    figure = f"{due} due, oldest waiting {age:.0f} s"
    if due == 0 or age < PENDING_WARN_S:
        out.append(Check("oldest_pending", "pass", figure))
    else:
        out.append(Check("oldest_pending", "fail" if age >= PENDING_FAIL_S else "warn", figure,
                         "jobs wait: no daemon running, too little concurrency, or a stuck wake-up"))
    rows = await conn.fetch(_Q["failures_last_hour"])
    perm = {r["task_type"]: int(r["failed"]) for r in rows if r["failed"]}
    retried = {r["task_type"]: int(r["retried"]) for r in rows if r["retried"]}
    figure = ", ".join(f"{r['task_type']}: {r['failed']} failed, {r['retried']} retried" for r in rows) or "none"
    if perm:
        out.append(Check("failures_last_hour", "fail", figure,
                         "permanent failures: `worker jobs list --status failed`, then `worker jobs retry`"))
    else:
        out.append(Check("failures_last_hour", "warn" if retried else "pass", figure))
    flags = [p["task_type"] for p in await paused(conn)]
    if flags:
        out.append(Check("paused", "warn", ", ".join("all task types" if f == "*" else f for f in flags),
                         "not claimed by the daemons until `worker resume`"))
    else:
        out.append(Check("paused", "pass", "nothing paused"))
    out.append(await _schedules(conn, settings, registry))
    out.append(await _autovacuum(conn))
    return out


async def _autovacuum(conn: asyncpg.Connection) -> Check:
    """Warn when autovacuum cannot run on job_queue or job_runs (off on the server, or off for the table): their
    dead rows then pile up under every claim until someone vacuums by hand (docs/maintenance.md)."""
    rows = await conn.fetch(queries("maintenance")["autovacuum_state"])
    dead = ", ".join(f"{r['table_name']} {r['dead_rows']} dead rows" for r in rows)
    if rows and not rows[0]["server_on"]:
        return Check("autovacuum", "warn", f"off on the server; {dead}",
                     "set autovacuum = on (and track_counts = on), or VACUUM the queue tables on a schedule: "
                     "see docs/maintenance.md")
    off = [r["table_name"] for r in rows if not r["table_on"]]
    if off:
        return Check("autovacuum", "warn", f"off for {', '.join(off)}; {dead}",
                     f"ALTER TABLE {off[0]} RESET (autovacuum_enabled): see docs/maintenance.md")
    return Check("autovacuum", "pass", f"on; {dead}")


async def _live_workers(conn: asyncpg.Connection) -> Check:
    """Task types with pending jobs (due or not) and no live worker that handles them fail (tests/test_nodes.py)."""
    from worker.nodes import live_workers, unserved_task_types

    workers = await live_workers(conn)
    unserved = await unserved_task_types(conn, any_age=True)
    figure = f"{len(workers)} live worker(s)"
    if not unserved:
        return Check("live_workers", "pass", figure)
    what = ", ".join(
        f"{u['task_type']} ({u['pending']} pending, {u['due']} due"
        + (f", oldest {u['oldest_s']:.0f} s)" if u["oldest_s"] is not None else ")")
        for u in unserved
    )
    return Check("live_workers", "fail", f"{figure}; no live worker for {what}",
                 "start a daemon that handles these task types (WORKER_TASK_TYPES), or pause them")


async def _schedules(conn: asyncpg.Connection, settings: Settings, registry: Registry) -> Check:
    now = datetime.now(UTC)
    state = {r["name"]: r for r in await conn.fetch(_Q["schedules"])}
    parts, worst = [], "pass"
    if not settings.schedules_enabled:
        return Check("schedules", "pass", "schedules disabled (WORKER_SCHEDULES_ENABLED=false)")
    for s in schedules_of(apply_overrides(registry, settings)):
        if not s.enabled:
            parts.append(f"{s.name}: disabled")
            continue
        if s.task_type not in registry:
            parts.append(f"{s.name}: task type {s.task_type} not registered")
            worst = "warn" if worst == "pass" else worst
            continue
        row = state.get(s.name)
        latest = s.latest_slot(now)
        if row is None:
            parts.append(f"{s.name}: never run by a daemon")
            worst = "warn" if worst == "pass" else worst
        elif row["last_slot"] < latest and now - latest > timedelta(seconds=SCHEDULE_GRACE_S):
            parts.append(f"{s.name}: missed slot {latest.isoformat()} (last {row['last_slot'].isoformat()})")
            worst = "fail"
        else:
            last = row["last_enqueued_at"].isoformat() if row["last_enqueued_at"] else "not yet"
            parts.append(f"{s.name}: last enqueued {last}")
    detail = "no daemon with schedules enabled is running" if worst == "fail" else ""
    status: Status = "fail" if worst == "fail" else "warn" if worst == "warn" else "pass"
    return Check("schedules", status, "; ".join(parts) or "none", detail)


async def _extensions(conn: asyncpg.Connection) -> list[Check]:
    out: list[Check] = []
    if await conn.fetchval(_Q["relation_exists"], "cron.job") and await conn.fetchval(
        _Q["relation_exists"], "cron.job_run_details"
    ):
        rows = await conn.fetch(_Q["cron_jobs"])
        bad = [r for r in rows if r["active"] and r["status"] == "failed"]
        figure = f"{len(rows)} jobs, {len(bad)} whose last run failed"
        detail = "; ".join(f"{r['jobname'] or r['jobid']}: {(r['return_message'] or '')[:200]}" for r in bad)
        out.append(Check("pg_cron", "fail" if bad else "pass", figure, detail))
    if await conn.fetchval(_Q["relation_exists"], "net.http_request_queue"):
        backlog = int(await conn.fetchval(_Q["net_queue"]))
        errors, sample = 0, None
        if await conn.fetchval(_Q["relation_exists"], "net._http_response"):
            row = await conn.fetchrow(_Q["net_errors"])
            errors, sample = int(row["errors"]), row["sample"]
        status: Status = "fail" if errors else "warn" if backlog > NET_BACKLOG_WARN else "pass"
        out.append(Check("pg_net", status, f"{backlog} queued requests, {errors} errors in the last hour",
                         sample or ""))
    return out


async def _readyz(url: str, timeout_s: float) -> Check:
    target = url.rstrip("/") + "/readyz"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(target)
    except httpx.HTTPError as exc:
        return Check("readyz", "fail", "unreachable", f"{target}: {type(exc).__name__}: {exc}")
    if response.status_code == 200:
        return Check("readyz", "pass", f"{target}: 200")
    return Check("readyz", "fail", f"{target}: {response.status_code}", response.text[:300])
