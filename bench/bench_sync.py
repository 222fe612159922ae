"""Benchmark of the game-platform sync: 1,000 competitors against the simulator at 20 ms latency.

    python bench/bench_sync.py [--competitors 1000] [--latency-ms 20] [--batch-size 100] [--concurrency 2 5 10]

For each concurrency it runs the sync `--repeat` times on a fresh throwaway database (first run: every row
inserted; the following runs: unchanged), and prints the elapsed time beside the ideal bound the batching and
concurrency allow, and the number of database round trips (statements the sync sent: 1 select, then at most
1 upsert per batch: one writer takes every answer that arrived during its previous write).

    ideal bound = ceil(batches / concurrency) x latency   (the brief's batches x latency / concurrency, rounded
                                                           up to whole waves: a batch cannot take less than
                                                           one latency)

The simulator runs in its own process (`worker simulate-platform`), so its JSON work does not share the sync's
event loop. Each timed run builds its client the way the job does (`GamePlatformClient.from_settings`, default
settings: 20 requests/s with a burst of 20, so ten batches never wait for the rate limit) and opens its
connections inside the timed section, as an hourly job does (idle keep-alive connections do not last an hour).
PostgreSQL: WORKER_TEST_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import structlog
from pydantic import SecretStr

from worker import db
from worker.game_platform.client import GamePlatformClient
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


async def _calibrate(url: str, batch_size: int) -> float:
    """Median wall time of one batch request alone: the configured latency plus HTTP and JSON costs."""
    ids = [player_id(i) for i in range(batch_size)]
    times = []
    async with GamePlatformClient(url, SecretStr(API_KEY), rps=10_000) as client:
        for _ in range(25):
            started = time.perf_counter()
            await client.fetch_stats_batch(ids)
            times.append(time.perf_counter() - started)
    return statistics.median(times[5:])


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


def _settings(url: str, name: str, args: argparse.Namespace, concurrency: int) -> GamePlatformSettings:
    """The job's settings (defaults, no .env file) for this simulator and concurrency."""
    return GamePlatformSettings(  # type: ignore[call-arg]
        _env_file=None,
        game_platform_base_url=url,
        game_platform_api_key=API_KEY,
        game_platform_concurrency=concurrency,
        game_platform_batch_size=args.batch_size,
    )


async def _one(
    url: str, name: str, args: argparse.Namespace, concurrency: int
) -> list[tuple[float, float, int, dict]]:
    settings = _settings(url, name, args, concurrency)
    pool = await db.create_pool(_db_url(name), max_size=max(2, concurrency))
    out = []
    try:
        # Warm the pool's connections and prepared statements once, like a long-running daemon has.
        async with GamePlatformClient.from_settings(settings) as client:
            await sync_all_competitor_game_stats(pool, client, dry_run=True, batch_size=args.batch_size,
                                                 concurrency=concurrency)
        for _ in range(args.repeat):
            counters = SyncCounters()
            async with GamePlatformClient.from_settings(settings) as client:
                started, cpu_started = time.perf_counter(), time.process_time()
                summary = await sync_all_competitor_game_stats(
                    pool, client, batch_size=args.batch_size, concurrency=concurrency, counters=counters
                )
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            out.append((elapsed, cpu, counters.db_round_trips, summary))
    finally:
        await pool.close()
    return out


async def main(args: argparse.Namespace) -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up only
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    sim = subprocess.Popen(
        [sys.executable, "-m", "worker", "simulate-platform", "--port", str(port), "--players",
         str(args.competitors), "--latency-ms", str(args.latency_ms), "--api-key", API_KEY],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_healthy(url)
        batches = math.ceil(args.competitors / args.batch_size)
        latency = args.latency_ms / 1000
        rtt = await _calibrate(url, args.batch_size)
        print(f"sync benchmark: {args.competitors} competitors, batch size {args.batch_size} ({batches} batches), "
              f"simulator latency {args.latency_ms:g} ms, {args.repeat} runs per row (run 1 inserts, then unchanged)")
        print(f"one batch request alone (calibration): {rtt * 1000:.1f} ms for {args.latency_ms:g} ms latency")
        print(f"{'conc':>4} {'bound ms':>9} {'naive ms':>9} {'median ms':>10} {'best ms':>8} {'median/bound':>12} "
              f"{'calibrated':>10} {'median/cal':>10} {'cpu ms':>7} {'db round trips':>15} {'competitors/rt':>15}")
        worst = worst_cal = 0.0
        for concurrency in args.concurrency:
            name = await _fresh_db(args.competitors)
            try:
                runs = await _one(url, name, args, concurrency)
            finally:
                await _drop_db(name)
            for _, _, _, summary in runs:
                assert summary["fetched"] == args.competitors and summary["failed"] == 0, summary
            bound = math.ceil(batches / concurrency) * latency
            naive = batches * latency / concurrency
            times = [e for e, _, _, _ in runs]
            cpu_ms = statistics.median(c for _, c, _, _ in runs) * 1000
            trips = max(t for _, _, t, _ in runs)
            median = statistics.median(times)
            worst = max(worst, median / bound) if bound else worst
            calibrated = math.ceil(batches / concurrency) * rtt
            worst_cal = max(worst_cal, median / calibrated)
            default_concurrency = GamePlatformSettings.model_fields["game_platform_concurrency"].default
            default = " (default)" if concurrency == default_concurrency else ""
            print(f"{concurrency:>4} {bound * 1000:>9.1f} {naive * 1000:>9.1f} {median * 1000:>10.1f} "
                  f"{min(times) * 1000:>8.1f} {(median / bound if bound else float('nan')):>12.2f} "
                  f"{calibrated * 1000:>10.1f} {median / calibrated:>10.2f} {cpu_ms:>7.1f} {trips:>15} "
                  f"{args.competitors / trips:>15.1f}{default}")
        print(f"worst median/bound: {worst:.2f}, worst median/calibrated bound: {worst_cal:.2f} (target <= 1.2); "
              "target <= 1 round trip per 50 competitors")
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competitors", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 5, 8, 10])
    parser.add_argument("--repeat", type=int, default=5)
    sys.exit(asyncio.run(main(parser.parse_args())))
