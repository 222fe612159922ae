"""Benchmark of the limits that hold across replicas (migration 010).

    python bench/bench_limits.py [--rate 20] [--requests 240] [--daemons 1 2 3] [--latency-ms 20]
    python bench/bench_limits.py --claim-cost [--claims 200]

Shared rate limit: the simulator runs as its own process with its own limit (`worker simulate-platform
--rate-limit-rps R --rate-limit-burst R --access-log`); 1, 2 and 3 daemons (`worker run`,
WORKER_GAME_PLATFORM_RPS=R, two syncs at once each) sync 2 x daemons coaches whose competitors add up to
`--requests` batch requests. From the simulator's access log (each line timestamped as it arrives) it prints the
requests answered, the 429s, the peak requests in any one-second window, the run's time (first request to last)
against the bound requests / R, and the requests per second over time.

Claim cost (`--claim-cost`): the same claims of 110 jobs from a backlog of noop jobs (each batch marked finished
after its claim, outside the timing, so that running jobs stay few as in a drain), timed from the client, with
no limit on the database, with a limit on a claimable type that has no job waiting (game_platform_sync by
default), the same with 1,000 jobs of another type running (a daemon claiming ahead holds that many), and with
50 jobs of the limited type waiting behind its full slot at the head of the queue.
PostgreSQL: WORKER_TEST_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from worker import db, queue
from worker.game_platform.simulator import player_id
from worker.migrate import migrate
from worker.sql import queries

SERVER_URL = os.environ.get("WORKER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
API_KEY = "bench-key"
BATCH = 5
_STATUS = re.compile(r'" (\d{3}) ')
_DONE = """UPDATE job_queue SET status = 'succeeded', locked_by = NULL, locked_until = NULL, finished_at = now()
WHERE id = ANY ($1::uuid[])"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _db_url(name: str) -> str:
    return urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{name}"))


async def _fresh_db() -> tuple[str, str]:
    name = f"bench_limits_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(SERVER_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    conn = await db.connect(_db_url(name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return name, _db_url(name)


async def _drop_db(name: str) -> None:
    admin = await asyncpg.connect(SERVER_URL)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


class AccessLog:
    """The simulator's access log lines, each stamped with time.monotonic() as it is read."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.answers: list[tuple[float, int]] = []
        assert proc.stdout is not None  # uvicorn writes its access log to stdout
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            match = _STATUS.search(line) if "/v1/stats/batch" in line else None
            if match:
                self.answers.append((time.monotonic(), int(match.group(1))))


def _worker_env(url: str, sim_url: str, rate: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "GAME_PLATFORM_", "DATABASE_URL"))}
    env.update({
        "DATABASE_URL": url, "GAME_PLATFORM_BASE_URL": sim_url, "GAME_PLATFORM_API_KEY": API_KEY,
        "WORKER_GAME_PLATFORM_RPS": str(rate), "WORKER_GAME_PLATFORM_BATCH_SIZE": str(BATCH),
        "WORKER_GAME_PLATFORM_CONCURRENCY": "4", "WORKER_CONCURRENCY": "2", "WORKER_DB_POOL_SIZE": "3",
        "WORKER_HTTP_ENABLED": "false", "WORKER_SCHEDULES_ENABLED": "false", "WORKER_LOG_LEVEL": "warning",
        "WORKER_LOG_FORMAT": "json",
    })
    return env


async def _rate_run(daemons: int, rate: float, requests: int, latency_ms: float) -> dict[str, float]:
    name, url = await _fresh_db()
    port = _free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "worker", "simulate-platform", "--port", str(port), "--players", "10000",
         "--latency-ms", str(latency_ms), "--rate-limit-rps", str(rate), "--rate-limit-burst", str(rate),
         "--access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
    )
    log = AccessLog(sim)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pool = await db.create_pool(url, max_size=2)
        coaches = 2 * daemons
        per_coach = requests * BATCH // coaches
        q = queries("game_platform")
        for c in range(coaches):
            coach = uuid.uuid4()
            ids = range(c * per_coach, (c + 1) * per_coach)
            await pool.fetch(q["insert_competitors"], [coach] * per_coach, [f"C{i}" for i in ids],
                             [player_id(i) for i in ids])
            await pool.execute("INSERT INTO job_queue (task_type, payload, max_attempts) VALUES "
                               "('game_platform_sync', jsonb_build_object('coachId', $1::text), 1)", str(coach))
        env = _worker_env(url, f"http://127.0.0.1:{port}", rate)
        started = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "worker", "run"], env=env, stdout=subprocess.DEVNULL)
                 for _ in range(daemons)]
        while await pool.fetchval("SELECT count(*) FROM job_queue WHERE status IN ('pending', 'running')"):
            if time.monotonic() - started > 600:
                raise SystemExit("the syncs did not finish within 10 minutes")
            await asyncio.sleep(0.2)
        failed = await pool.fetchval("SELECT count(*) FROM job_queue WHERE status <> 'succeeded'")
        await pool.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        sim.terminate()
        sim.wait(timeout=10)
        await _drop_db(name)
    times = [t for t, _ in log.answers]
    first, last = min(times), max(times)
    ok = sum(1 for _, s in log.answers if s == 200)
    peak = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    per_second = Counter(int(t - first) for t in times)
    return {
        "daemons": daemons, "requests": len(times), "ok": ok,
        "throttled": sum(1 for _, s in log.answers if s == 429), "peak": peak, "elapsed": last - first,
        "bound": ok / rate, "failed": failed,
        "per_second": " ".join(str(per_second.get(i, 0)) for i in range(int(last - first) + 1)),
    }


async def _claim_cost(claims: int) -> None:
    name, url = await _fresh_db()
    conn = await db.connect(url)
    types = ["noop", "cleanup", "game_platform_sync"]
    try:
        async def timed(label: str) -> None:
            await conn.execute("UPDATE job_queue SET status = 'pending', attempts = 0, locked_by = NULL, "
                               "locked_until = NULL, started_at = NULL, finished_at = NULL WHERE task_type = 'noop'")
            await conn.execute("VACUUM ANALYZE job_queue")
            ms = []
            for _ in range(claims):
                t = time.perf_counter()
                jobs = await queue.claim(conn, worker_id="bench", task_types=types, limit=110, lease_s=30)
                ms.append((time.perf_counter() - t) * 1000)
                assert len(jobs) == 110, len(jobs)
                await conn.execute(_DONE, [j.id for j in jobs])  # as finished: running jobs stay few
            ms.sort()
            print(f"| {label} | {statistics.median(ms):.2f} | {ms[len(ms) * 9 // 10]:.2f} |")

        await conn.execute("INSERT INTO job_queue (task_type) SELECT 'noop' FROM generate_series(1, $1)",
                           claims * 110 + 1000)
        print("| claim of 110 jobs (noop backlog) | median ms | p90 ms |")
        print("|---|---:|---:|")
        await timed("no limit on the database (008's walk)")
        await conn.execute("INSERT INTO job_queue_limits (task_type, max_running, key_field) "
                           "VALUES ('game_platform_sync', 1, 'coachId')")
        await timed("game_platform_sync limited, none waiting")
        await conn.execute("INSERT INTO job_queue (task_type, status, attempts, locked_by, locked_until, started_at)"
                           " SELECT 'busy', 'running', 1, 'x', now() + interval '1 hour', now()"
                           " FROM generate_series(1, 1000)")
        await timed("game_platform_sync limited, none waiting, 1,000 other jobs running")
        await conn.execute("INSERT INTO job_queue (task_type, status, attempts, locked_by, locked_until, started_at)"
                           " VALUES ('game_platform_sync', 'running', 1, 'x', now() + interval '1 hour', now())")
        await conn.execute("INSERT INTO job_queue (task_type, priority) SELECT 'game_platform_sync', 10"
                           " FROM generate_series(1, 50)")
        await timed("50 game_platform_sync waiting at the head, slot full, 1,000 other jobs running")
    finally:
        await conn.close()
        await _drop_db(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--daemons", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--claim-cost", action="store_true")
    parser.add_argument("--claims", type=int, default=200)
    args = parser.parse_args()
    if args.claim_cost:
        asyncio.run(_claim_cost(args.claims))
        return
    print(f"rate limit R = {args.rate:g}/s (simulator and WORKER_GAME_PLATFORM_RPS), burst R; {args.requests} "
          f"batch requests of {BATCH} players; latency {args.latency_ms:g} ms; two syncs at once per daemon")
    print("| daemons | requests | 429s | peak /s | time s | bound s | time / bound | failed jobs |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for n in args.daemons:
        r = asyncio.run(_rate_run(n, args.rate, args.requests, args.latency_ms))
        rows.append(r)
        print(f"| {n} | {r['requests']} | {r['throttled']} | {r['peak']} | {r['elapsed']:.2f} | {r['bound']:.2f} "
              f"| {r['elapsed'] / r['bound']:.3f} | {r['failed']} |", flush=True)
    for r in rows:
        print(f"requests per second, {r['daemons']} daemon(s): {r['per_second']}")


if __name__ == "__main__":
    main()
