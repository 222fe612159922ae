"""Rate limits of the game platform client: a local token bucket (`rate` requests per second on average, at most
`burst` at once), and the budget every process shares per API key, kept in PostgreSQL (SharedRateLimiter)."""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import asyncpg
import structlog

from worker import db
from worker.errors import DatabaseUnavailable
from worker.game_platform.settings import GamePlatformSettings
from worker.sql import queries

__all__ = ["LimiterMetrics", "RequestLimiter", "SharedRateLimiter", "TokenBucket", "bucket_name", "shared_limiter"]

log = structlog.get_logger("worker.game_platform.ratelimit")
_Q = queries("limits")


class TokenBucket:
    """Waiters are served first come, first served (the lock is held while one waits for its token); a caller
    that finds a token and no queue takes it at once."""

    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.capacity = max(1.0, burst if burst is not None else rate)
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = anyio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self) -> bool:
        """Take a token if one is there (the simulator's server-side check)."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until the next token (0 if one is there)."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)

    def record_429(self) -> None:
        """The platform answered 429 (nothing to record for a local bucket)."""

    async def acquire(self) -> None:
        if not self._lock.locked() and self.try_acquire():
            return  # a token is there and nobody queues before us: no lock, no trip through the event loop
        async with self._lock:
            wait = self.wait_time()
            if wait > 0:
                await anyio.sleep(wait)
                self._refill()
            self._tokens -= 1  # may dip a hair below 0 after float rounding: the next wait covers it


class RequestLimiter(Protocol):
    """What the client waits on before each request (TokenBucket, SharedRateLimiter)."""

    async def acquire(self) -> None: ...
    def record_429(self) -> None: ...


class LimiterMetrics(Protocol):
    """What the limiter reports (worker/metrics.py implements it)."""

    def rate_limit_waited(self, bucket: str, seconds: float) -> None: ...
    def rate_limit_fallback(self, bucket: str, active: bool) -> None: ...
    def platform_throttled(self) -> None: ...


class SharedRateLimiter:
    """One budget for every process and every job using an API key: a token bucket kept in PostgreSQL
    (job_queue_rate_buckets, migration 010) at `rate` per second holding at most `burst`. A process draws a batch
    of tokens per statement (one per request waiting, at most `batch`, all or none) and spends them within `hold_s`
    or loses them, so the fleet never sends more than `burst + rate * t` in any `t` seconds
    (tests/test_limits_process.py: 0 answers 429 with three daemons). The draw is one UPDATE: nothing stays
    locked when a process dies. When the database cannot be reached the process falls back to a local bucket
    at `fallback_share` of the rate (logged; retried every `retry_shared_s`), never more than the rate."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bucket: str,
        rate: float,
        burst: float | None = None,
        *,
        fallback_share: float = 0.25,
        batch: int | None = None,
        hold_s: float = 0.25,
        call_timeout_s: float = 2.0,
        retry_shared_s: float = 5.0,
        metrics: LimiterMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        if not 0 < fallback_share <= 1:
            raise ValueError("fallback_share must be in (0, 1]")
        self.pool = pool
        self.bucket = bucket
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate / 2)
        self.batch = batch if batch is not None else max(1, min(int(self.burst), math.ceil(rate / 5)))
        self.hold_s = hold_s
        self.call_timeout_s = call_timeout_s
        self.retry_shared_s = retry_shared_s
        self.metrics = metrics
        self._clock = clock
        self._fallback = TokenBucket(rate * fallback_share, max(1.0, self.burst * fallback_share), clock=clock)
        self.fallback_share = fallback_share
        self._fallback_until = -math.inf
        self._in_fallback = False
        self._local = 0
        self._local_until = -math.inf
        self._waiters = 0
        self._draw_lock = anyio.Lock()
        self._created = False
        self.draws = 0
        """Statements run against the shared bucket."""
        self.batches = 0
        """Of those, the ones that granted tokens."""

    def record_429(self) -> None:
        if self.metrics is not None:
            self.metrics.platform_throttled()

    def _take_local(self) -> bool:
        if self._local > 0 and self._clock() < self._local_until:
            self._local -= 1
            return True
        self._local = 0
        return False

    async def acquire(self) -> None:
        started = self._clock()
        self._waiters += 1
        try:
            await self._acquire()
        finally:
            self._waiters -= 1
        if self.metrics is not None:
            self.metrics.rate_limit_waited(self.bucket, self._clock() - started)

    async def _acquire(self) -> None:
        while True:
            if self._take_local():
                return
            if self._clock() < self._fallback_until:
                await self._fallback.acquire()
                return
            async with self._draw_lock:
                if self._take_local():  # another waiter drew while this one queued for the lock
                    return
                if self._clock() < self._fallback_until:
                    continue
                want = min(self.batch, max(1, self._waiters))
                try:
                    granted, left = await self._draw(want)
                except (DatabaseUnavailable, OSError, TimeoutError, asyncpg.PostgresError) as exc:
                    self._enter_fallback(exc)
                    continue
                self._leave_fallback()
                if granted > 0:
                    self.batches += 1
                    self._local = granted
                    self._local_until = self._clock() + self.hold_s
                    continue
                # None there: wait until the batch wanted is (not one token: a statement per batch, not per request)
                # (jittered: processes that found it empty together do not all come back at the same moment)
                await anyio.sleep(max(0.001, (want - left) / self.rate) * (1.0 + 0.1 * random.random()))

    async def _draw(self, want: int) -> tuple[int, float]:
        async with db.bounded(self.pool, self.call_timeout_s) as conn:
            with db.translate():
                if not self._created:
                    await conn.execute(_Q["ensure_bucket"], self.bucket, self.burst)
                    self._created = True
                row = await conn.fetchrow(_Q["draw_tokens"], self.bucket, self.rate, self.burst, want)
        self.draws += 1
        if row is None:  # the row was deleted: create it again on the next draw
            self._created = False
            return 0, 1.0
        return int(row["granted"]), float(row["tokens"])

    def _enter_fallback(self, exc: BaseException) -> None:
        self._fallback_until = self._clock() + self.retry_shared_s
        if not self._in_fallback:
            self._in_fallback = True
            log.warning(
                "game_platform.rate_limit_fallback", bucket=self.bucket, error=f"{type(exc).__name__}: {exc}",
                local_rps=round(self._fallback.rate, 3), share=self.fallback_share,
                note="the shared budget in the database is unreachable: this process alone uses a share of it",
            )
            if self.metrics is not None:
                self.metrics.rate_limit_fallback(self.bucket, True)

    def _leave_fallback(self) -> None:
        if self._in_fallback:
            self._in_fallback = False
            log.info("game_platform.rate_limit_shared", bucket=self.bucket)
            if self.metrics is not None:
                self.metrics.rate_limit_fallback(self.bucket, False)


def bucket_name(base_url: str, api_key: str) -> str:
    """The shared bucket of one API key on one platform: named by a hash, never the key itself."""
    digest = hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:16]
    return f"game_platform:{digest}"


def shared_limiter(
    resources: dict[str, Any], settings: GamePlatformSettings, pool: asyncpg.Pool, *, call_timeout_s: float = 5.0
) -> SharedRateLimiter:
    """The process's one limiter for the configured API key, made on first use and kept in `resources` (shared
    by every job this process runs)."""
    key = settings.game_platform_api_key.get_secret_value() if settings.game_platform_api_key else ""
    name = bucket_name(settings.game_platform_base_url, key)
    limiter = resources.get("game_platform_limiter")
    if not isinstance(limiter, SharedRateLimiter) or (limiter.bucket, limiter.rate) != (
        name, settings.game_platform_rps
    ):
        limiter = SharedRateLimiter(
            pool, name, settings.game_platform_rps, fallback_share=settings.game_platform_fallback_share,
            call_timeout_s=call_timeout_s, metrics=resources.get("metrics"),
        )
        resources["game_platform_limiter"] = limiter
    return limiter
