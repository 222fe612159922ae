"""A client-side token bucket: `rate` requests per second on average, at most `burst` at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

__all__ = ["TokenBucket"]


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

    async def acquire(self) -> None:
        if not self._lock.locked() and self.try_acquire():
            return  # a token is there and nobody queues before us: no lock, no trip through the event loop
        async with self._lock:
            wait = self.wait_time()
            if wait > 0:
                await anyio.sleep(wait)
                self._refill()
            self._tokens -= 1  # may dip a hair below 0 after float rounding: the next wait covers it
