"""The game platform's shared rate limit (worker/game_platform/ratelimit.py, job_queue_rate_buckets): limiters of
separate pools (as separate processes) draw from one budget, a statement draws a batch, and a database that
cannot be reached makes a limiter fall back to its local share, logged, never above the rate."""

from __future__ import annotations

import socket
import time

import anyio
import asyncpg
from structlog.testing import capture_logs

from worker import db
from worker.game_platform.ratelimit import SharedRateLimiter


async def _spend(limiter: SharedRateLimiter, until: float, sent: list[float]) -> None:
    while time.monotonic() < until:
        await limiter.acquire()
        sent.append(time.monotonic())


async def test_limiters_of_three_pools_together_take_no_more_than_the_burst_plus_the_rate_over_time(
    database_url: str,
) -> None:
    pools = [await db.create_pool(database_url, max_size=2) for _ in range(3)]
    limiters = [SharedRateLimiter(p, "test:bucket", rate=40, burst=10) for p in pools]
    sent: list[float] = []
    start = time.monotonic()
    try:
        async with anyio.create_task_group() as tg:
            for limiter in limiters:
                for _ in range(4):  # four requests in flight per process
                    tg.start_soon(_spend, limiter, start + 2.0, sent)
    finally:
        for p in pools:
            await p.close()
    elapsed = max(sent) - start
    assert len(sent) <= 10 + 40 * elapsed + 1
    assert len(sent) >= 40 * elapsed * 0.8  # the budget is used, not wasted (tokens drawn and dropped)
    batches = sum(limiter.batches for limiter in limiters)
    assert batches <= len(sent) / 2  # a statement draws a batch, not one token per request


async def test_an_unreachable_database_falls_back_to_the_local_share_and_says_so_once() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = await db.create_pool(f"postgresql://postgres@127.0.0.1:{port}/none", max_size=1, connect_timeout_s=1)
    limiter = SharedRateLimiter(pool, "test:down", rate=40, burst=8, fallback_share=0.25)
    sent: list[float] = []
    start = time.monotonic()
    try:
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(_spend, limiter, start + 1.5, sent)
    finally:
        await pool.close()
    elapsed = max(sent) - start
    assert len(sent) <= 2 + 10 * elapsed + 1  # a quarter of the rate, its quarter of the burst
    fallbacks = [e for e in logs if e["event"] == "game_platform.rate_limit_fallback"]
    assert len(fallbacks) == 1 and fallbacks[0]["log_level"] == "warning"
    assert "ConnectionRefused" in fallbacks[0]["error"] or "OSError" in fallbacks[0]["error"]


async def test_a_draw_leaves_no_lock_behind(database_url: str, conn: asyncpg.Connection) -> None:
    pool = await db.create_pool(database_url, max_size=1)
    try:
        limiter = SharedRateLimiter(pool, "test:locks", rate=10, burst=5)
        await limiter.acquire()
        await conn.execute("SET lock_timeout = '100ms'")
        await conn.execute("SELECT FROM job_queue_rate_buckets WHERE bucket = 'test:locks' FOR UPDATE NOWAIT")
        tokens = await conn.fetchval("SELECT tokens FROM job_queue_rate_buckets WHERE bucket = 'test:locks'")
        assert 0 <= tokens < 5
    finally:
        await pool.close()
