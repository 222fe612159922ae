"""`worker demo`: the whole system working, in one command, on a fresh machine.

A database (DATABASE_URL, or a private throwaway PostgreSQL from the system's binaries), migrations, a few
seeded coaches and competitors, the game-platform simulator, the daemon with its HTTP port, and one sync
enqueued through `POST /trigger`; then progress, the job's summary, `/metrics` highlights and the URLs. Without
`--keep-running` it stops everything it started and leaves nothing running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable

import anyio
import asyncpg
import httpx
from pydantic import SecretStr

from worker import db, queue
from worker.builtin import default_registry
from worker.cli.pgcluster import ClusterError, throwaway_cluster
from worker.errors import ConfigError, WorkerError
from worker.game_platform.settings import GamePlatformSettings
from worker.game_platform.simulator import Simulator, player_id, serve_simulator
from worker.logs import configure_logging
from worker.migrate import migrate
from worker.runtime.daemon import Daemon
from worker.service import build_daemon
from worker.settings import Settings, load_settings
from worker.sql import queries
from worker.statuses import FINISHED

__all__ = ["run_cli", "run_demo"]

TASK_TYPE = "game_platform_sync"
_HIGHLIGHTS = frozenset({
    "worker_jobs_claimed_total", "worker_jobs_succeeded_total", "worker_jobs_failed_total",
    "worker_jobs_retried_total", "worker_job_duration_seconds_sum", "worker_jobs",
    "worker_job_last_success_timestamp_seconds", "worker_oldest_due_pending_age_seconds",
    "worker_listener_reconnects_total",
})
Say = Callable[[str], None]


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `worker demo` (needs no settings: the demo makes its own)."""
    if not (1 <= args.coaches <= 100 and 1 <= args.competitors <= 100 and 0 <= args.http_port <= 65535
            and args.timeout > 0):
        print("worker: error: --coaches and --competitors must be 1..100, --http-port 0..65535, --timeout > 0",
              file=sys.stderr)
        return 2
    configure_logging("info" if args.verbose else "warning", "console")
    say: Say = lambda line: print(line, flush=True)  # noqa: E731
    url = os.environ.get("DATABASE_URL") or os.environ.get("WORKER_DATABASE_URL")
    private = not url
    try:
        with contextlib.ExitStack() as stack:
            if url:
                say("database: DATABASE_URL (the tables are created if missing)")
            else:
                say("database: starting a private PostgreSQL in a temporary directory ...")
                cluster = stack.enter_context(throwaway_cluster())
                url = cluster.url()
                say(f"database: {url} (data in {cluster.root}; deleted at the end)")
            code = anyio.run(
                lambda: run_demo(
                    url or "", say=say, keep_running=args.keep_running, coaches=args.coaches,
                    per_coach=args.competitors, http_port=args.http_port, timeout_s=args.timeout,
                )
            )
        if private:
            say("stopped: the private PostgreSQL (its data is deleted)")
        return code
    except ClusterError as exc:
        print(f"worker: error: {exc} (or set DATABASE_URL to use an existing database)", file=sys.stderr)
        return 1
    except (ConfigError, WorkerError) as exc:
        print(f"worker: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def run_demo(
    database_url: str, *, say: Say, keep_running: bool = False, coaches: int = 3, per_coach: int = 4,
    http_port: int = 0, timeout_s: float = 60.0,
) -> int:
    async with db.connection(database_url) as conn:
        applied = await migrate(conn)
        say(f"migrations: {'applied ' + ', '.join(f'{v:03d}' for v in applied) if applied else 'up to date'}")
        seeded = await _seed(conn, coaches, per_coach)
        say(f"seeded: {coaches} coaches x {per_coach} competitors ({seeded} new)")
    sim = Simulator(players=max(1000, coaches * per_coach), latency_s=0.01)
    async with serve_simulator(sim) as platform_url:
        say(f"game platform simulator: {platform_url}")
        secret = secrets.token_urlsafe(24)
        settings = load_settings(
            database_url=database_url,
            http_enabled=True, http_host="127.0.0.1", http_port=http_port, runner_secret=secret,
            admin_token=secrets.token_urlsafe(16), schedules_enabled=False, worker_id="demo",
            listen_enabled=True, statement_cache=True, listen_database_url=None,
        )
        platform = GamePlatformSettings(
            game_platform_base_url=platform_url, game_platform_api_key=SecretStr("demo-key")
        )
        async with _daemon(settings, platform) as daemon:
            base = f"http://127.0.0.1:{daemon.resources['http_server'].port}"
            say(f"daemon: running, HTTP on {base}")
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                code = await _sync_once(http, settings, daemon, secret, say, timeout_s)
                if code == 0:
                    await _report(http, base, settings, say)
                if keep_running:
                    say("everything keeps running; press Ctrl-C to stop it all")
                    await _wait_for_signal()
    say("stopped: daemon and simulator")
    return code


async def _seed(conn: asyncpg.Connection, coaches: int, per_coach: int) -> int:
    coach_ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"worker-demo-coach-{c}") for c in range(coaches)]
    cols: tuple[list[uuid.UUID], list[str], list[str]] = ([], [], [])
    for c, coach in enumerate(coach_ids):
        for k in range(per_coach):
            index = c * per_coach + k
            cols[0].append(coach)
            cols[1].append(f"Competitor {c + 1}.{k + 1}")
            cols[2].append(player_id(index))
    with db.translate():
        rows = await conn.fetch(queries("game_platform")["insert_competitors"], *cols)
    return len(rows)


@contextlib.asynccontextmanager
async def _daemon(settings: Settings, platform: GamePlatformSettings) -> AsyncIterator[Daemon]:
    pool = await db.create_pool(settings.dsn, max_size=settings.db_pool_size)
    try:
        daemon = build_daemon(settings, default_registry(), pool, task_configs=[platform])
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            with anyio.fail_after(30):
                await daemon.started.wait()
                await daemon.resources["http_server"].listening.wait()
            try:
                yield daemon
            finally:
                daemon.stop()
    finally:
        with anyio.move_on_after(5):
            await pool.close()


async def _sync_once(
    http: httpx.AsyncClient, settings: Settings, daemon: Daemon, secret: str, say: Say, timeout_s: float
) -> int:
    answer = await http.post(
        "/trigger", headers={"Authorization": f"Bearer {secret}"}, json={"task_type": TASK_TYPE},
    )
    if answer.status_code != 202:
        say(f"enqueue failed: POST /trigger -> {answer.status_code} {answer.text}")
        return 1
    job_id = uuid.UUID(answer.json()["job_id"])
    say(f"enqueued: {TASK_TYPE} job {job_id} (POST /trigger -> 202)")
    last = ""
    with anyio.move_on_after(timeout_s) as scope:
        while True:
            async with daemon.pool.acquire() as conn:
                job = await queue.get_job(conn, job_id)
                stats = await conn.fetchval(queries("demo")["stats_rows"])
            line = f"  {job['status']:<9} attempt {job['attempts']}  competitors with stats: {stats}"
            if line != last:
                say(line)
                last = line
            if job["status"] in FINISHED:
                break
            await anyio.sleep(0.1)
    if scope.cancelled_caught:
        say(f"the sync did not finish within {timeout_s:g} s")
        return 1
    if job["status"] != "succeeded":
        say(f"the sync ended {job['status']}: {job['last_error']}")
        return 1
    say("summary: " + json.dumps(job["result"], sort_keys=True, default=str))
    return 0


async def _report(http: httpx.AsyncClient, base: str, settings: Settings, say: Say) -> None:
    metrics = (await http.get("/metrics")).text
    say("metrics (/metrics):")
    for line in _highlights(metrics):
        say(f"  {line}")
    ready = await http.get("/readyz")
    say(f"readiness: GET /readyz -> {ready.status_code}")
    admin = await http.get("/admin")
    if admin.status_code != 404:
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        say(f"admin: {base}/admin (token: {token})")
    else:
        say("admin: not part of this build")
    say(f"health: {base}/healthz   metrics: {base}/metrics")


def _highlights(metrics: str) -> list[str]:
    """The demo's lines of /metrics: its task type's counters, non-zero queue gauges, the listener."""
    picked = []
    for line in metrics.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in _HIGHLIGHTS or ("{" in line and TASK_TYPE not in line):
            continue
        if name == "worker_jobs" and line.endswith(" 0.0"):
            continue
        picked.append(line)
    return picked


async def _wait_for_signal() -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return
