"""Benchmark of the game-platform sync against a fair ceiling, and the sync at 100,000 competitors.

    python bench/bench_sync.py [--ceiling-competitors 5000] [--latencies 20 100] [--rounds 7]
    python bench/bench_sync.py --competitors 100000 --rps 170 [--latency-ms 20]

Fair ceiling (the default): beside the project's sync, a minimal sync (plain httpx.AsyncClient with the same
connection limits, asyncpg, the same batches and concurrency, JSON parsing only, one upsert per batch with
the project's own upsert statement) runs against the same simulator in the same run, in rounds (the order
alternates each round), at each latency. Printed: the median wall and CPU time of each and their ratios.
Target: project / minimal <= 1.1 in wall time and <= 1.3 in CPU time at both latencies. The project's client
gets a rate limit high enough never to bind (the minimal sync has none).

Scale (`--competitors N`): one sync of N competitors built as the job builds it (GamePlatformClient
.from_settings, WORKER_GAME_PLATFORM_RPS = --rps) in this process, the way the daemon runs it. Printed: the
time against the rate limit's bound (requests / rps), and this process's RSS before, at its peak during the
run (sampled every 20 ms) and after.

The simulator runs in its own process (`worker simulate-platform`). PostgreSQL: WORKER_TEST_DATABASE_URL or
postgresql://postgres@127.0.0.1:5432/postgres. Each measurement uses a fresh throwaway database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import orjson
import structlog

from worker import db
from worker.game_platform.client import GamePlatformClient
from worker.game_platform.contract import API_KEY_HEADER, BATCH_PATH
from worker.game_platform.settings import GamePlatformSettings
from worker.game_platform.simulator import player_id
from worker.game_platform.sync import SyncCounters, sync_all_competitor_game_stats
from worker.migrate import migrate
from worker.sql import queries

SERVER_URL = os.environ.get("WORKER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
API_KEY = "bench-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _db_url(name: str) -> str:
    return urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{name}"))


async def _wait_healthy(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(f"{url}/v1/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("the simulator did not start")


async def _fresh_db(competitors: int) -> str:
    name = f"worker_bench_sync_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(SERVER_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await db.connect(_db_url(name))
    try:
        await migrate(conn)
        coach = uuid.uuid4()
        await conn.execute(
            queries("game_platform")["insert_competitors"],
            [coach] * competitors,
            [f"Competitor {i}" for i in range(competitors)],
            [player_id(i) for i in range(competitors)],
        )
    finally:
        await conn.close()
    return name


async def _drop_db(name: str) -> None:
    admin = await asyncpg.connect(SERVER_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _settings(url: str, concurrency: int, batch_size: int, rps: float) -> GamePlatformSettings:
    """The job's settings (defaults, no .env file) for this simulator, concurrency and rate."""
    return GamePlatformSettings(  # type: ignore[call-arg]
        _env_file=None,
        game_platform_base_url=url,
        game_platform_api_key=API_KEY,
        game_platform_concurrency=concurrency,
        game_platform_batch_size=batch_size,
        game_platform_rps=rps,
    )


class _Simulator:
    def __init__(self, players: int, latency_ms: float) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "simulate-platform", "--port", str(self.port), "--players",
             str(players), "--latency-ms", str(latency_ms), "--api-key", API_KEY],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# --- the minimal sync: the fair ceiling ------------------------------------------------------------------
async def minimal_sync(pool: asyncpg.Pool, url: str, batch_size: int, concurrency: int) -> int:
    """List, cut into batches, `concurrency` workers each POST a batch, parse the JSON, one upsert per batch."""
    upsert = queries("game_platform")["upsert_stats"]
    rows = await pool.fetch("SELECT id, platform_player_id FROM competitors ORDER BY id")
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    pending = iter(batches)
    written = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={API_KEY_HEADER: API_KEY}, limits=limits) as http:

        async def slot() -> None:
            nonlocal written
            for batch in pending:
                by_player = {r["platform_player_id"]: r["id"] for r in batch}
                response = await http.post(BATCH_PATH, content=orjson.dumps({"player_ids": list(by_player)}),
                                           headers={"Content-Type": "application/json"})
                data = orjson.loads(response.content)["data"]
                await pool.fetchrow(
                    upsert,
                    [by_player[d["player_id"]] for d in data], [d["games_played"] for d in data],
                    [d["wins"] for d in data], [d["losses"] for d in data], [d["draws"] for d in data],
                    [d["rating"] for d in data], [datetime.fromisoformat(d["updated_at"]) for d in data],
                )
                written += len(data)

        await asyncio.gather(*(slot() for _ in range(concurrency)))
    return written


async def _project(pool: asyncpg.Pool, settings: GamePlatformSettings) -> int:
    async with GamePlatformClient.from_settings(settings) as client:
        summary = await sync_all_competitor_game_stats(
            pool, client, batch_size=settings.game_platform_batch_size,
            concurrency=settings.game_platform_concurrency,
        )
    return int(summary["fetched"])


async def _timed(run: object) -> tuple[float, float, int]:
    started, cpu = time.perf_counter(), time.process_time()
    n = await run  # type: ignore[misc]
    return time.perf_counter() - started, time.process_time() - cpu, n


async def ceiling(args: argparse.Namespace) -> None:
    n, conc, size = args.ceiling_competitors, args.concurrency, args.batch_size
    print(f"fair ceiling: {n} competitors, batch {size}, concurrency {conc}, {args.rounds} rounds per latency "
          "(order alternates); medians; CPU = this process's CPU time (the simulator runs apart)")
    print(f"{'latency':>8} {'project ms':>11} {'minimal ms':>11} {'wall ratio':>10} "
          f"{'project cpu':>12} {'minimal cpu':>12} {'cpu ratio':>10}")
    for latency in args.latencies:
        sim = _Simulator(n, latency)
        name = await _fresh_db(n)
        try:
            await _wait_healthy(sim.url)
            settings = _settings(sim.url, conc, size, rps=10_000)
            pool = await db.create_pool(_db_url(name), max_size=max(2, conc))
            try:
                await _project(pool, settings)  # warm both: connections, prepared statements, first inserts
                await minimal_sync(pool, sim.url, size, conc)
                project: list[tuple[float, float, int]] = []
                minimal: list[tuple[float, float, int]] = []
                for r in range(args.rounds):
                    order = [("p", project), ("m", minimal)] if r % 2 == 0 else [("m", minimal), ("p", project)]
                    for kind, out in order:
                        run = _project(pool, settings) if kind == "p" else minimal_sync(pool, sim.url, size, conc)
                        out.append(await _timed(run))
            finally:
                await pool.close()
        finally:
            await _drop_db(name)
            sim.stop()
        assert all(x[2] == n for x in project + minimal), "a run did not fetch every competitor"
        pw, mw = statistics.median(x[0] for x in project), statistics.median(x[0] for x in minimal)
        pc, mc = statistics.median(x[1] for x in project), statistics.median(x[1] for x in minimal)
        print(f"{latency:>6g}ms {pw * 1000:>11.1f} {mw * 1000:>11.1f} {pw / mw:>10.2f} "
              f"{pc * 1000:>10.1f}ms {mc * 1000:>10.1f}ms {pc / mc:>10.2f}")
    print("target: wall ratio <= 1.1, cpu ratio <= 1.3 at each latency")


# --- the scale run ----------------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Peak(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss_mb()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, _rss_mb())


async def scale(args: argparse.Namespace) -> None:
    n = args.competitors
    sim = _Simulator(n, args.latency_ms)
    name = await _fresh_db(n)
    try:
        await _wait_healthy(sim.url)
        settings = _settings(sim.url, args.concurrency, args.batch_size, rps=args.rps)
        pool = await db.create_pool(_db_url(name), max_size=max(2, args.concurrency))
        try:
            async with GamePlatformClient.from_settings(settings) as client:  # warm the pool and imports
                await client.fetch_stats_batch([player_id(0)])
            before = _rss_mb()
            peak = _Peak()
            peak.start()
            counters = SyncCounters()
            seen: list[int] = []
            started, cpu = time.perf_counter(), time.process_time()
            async with GamePlatformClient.from_settings(settings) as client:
                summary = await sync_all_competitor_game_stats(
                    pool, client, batch_size=args.batch_size, concurrency=args.concurrency, counters=counters,
                    progress=lambda d, t, p: seen.append(d),
                )
            elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu
            peak.done.set()
            peak.join()
            after = _rss_mb()
        finally:
            await pool.close()
    finally:
        await _drop_db(name)
        sim.stop()
    assert summary["fetched"] == n and summary["failed"] == 0, {k: summary[k] for k in ("fetched", "failed")}
    bound = counters.http_requests / args.rps
    burst = min(args.rps, counters.http_requests)  # the bucket starts full: one second's worth at once
    print(f"scale: {n} competitors, batch {args.batch_size}, concurrency {args.concurrency}, "
          f"WORKER_GAME_PLATFORM_RPS={args.rps:g}, simulator latency {args.latency_ms:g} ms")
    print(f"  requests {counters.http_requests}, pages {counters.pages}, db round trips {counters.db_round_trips}, "
          f"progress reports {len(seen)}")
    print(f"  time {elapsed:.2f} s; bound requests/rps {bound:.2f} s (the first {burst:g} ride the initial burst: "
          f"{(counters.http_requests - burst) / args.rps:.2f} s); time/bound {elapsed / bound:.3f}; cpu {cpu_s:.2f} s")
    print(f"  RSS before {before:.1f} MB, peak {peak.peak:.1f} MB (+{peak.peak - before:.1f}), "
          f"after {after:.1f} MB (+{after - before:.1f}); target: growth <= 50 MB, time/bound <= 1.05")


async def main(args: argparse.Namespace) -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up only
    if args.competitors:
        await scale(args)
    else:
        await ceiling(args)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competitors", type=int, default=0, help="run the scale measurement with this many")
    parser.add_argument("--rps", type=float, default=20.0, help="WORKER_GAME_PLATFORM_RPS of the scale run")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulator latency of the scale run")
    parser.add_argument("--ceiling-competitors", type=int, default=5000)
    parser.add_argument("--latencies", type=float, nargs="+", default=[20.0, 100.0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    sys.exit(asyncio.run(main(parser.parse_args())))
