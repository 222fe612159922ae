"""Retry policy: a pure function of (attempt, now, policy), in the manner of River's NextRetryAt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "DATABASE_AWAY", "RECONNECT_BASE_S", "SCHEDULER_AWAY", "Backoff", "BackoffPolicy", "next_retry_at",
    "reconnect_policy", "retry_delay_s",
]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base_s: float = 5.0
    """Delay before the first retry (attempt 1 failed)."""
    max_s: float = 3600.0
    """Cap on any single delay."""
    jitter: float = 0.2
    """Fraction of the delay randomised, +/- (0 = deterministic)."""
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.max_s < self.base_s:
            raise ValueError("backoff needs 0 < base_s <= max_s")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be within [0, 1]")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")


def retry_delay_s(attempt: int, policy: BackoffPolicy, rand: float | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    Exponential (base * factor**(attempt-1)), capped at max_s, then jittered by +/- jitter; the jittered
    value never exceeds max_s and never drops below zero. `rand` in [0, 1) makes it deterministic in tests.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    exponent = min(attempt - 1, 64)  # keep the power finite
    raw = min(policy.base_s * policy.factor**exponent, policy.max_s)
    r = random.random() if rand is None else rand
    jittered = raw * (1 + policy.jitter * (2 * r - 1))
    return max(0.0, min(jittered, policy.max_s))


def next_retry_at(attempt: int, now: datetime, policy: BackoffPolicy, rand: float | None = None) -> datetime:
    return now + timedelta(seconds=retry_delay_s(attempt, policy, rand))


RECONNECT_BASE_S = 0.2
"""First delay before reconnecting a long-lived connection (LISTEN) that failed."""


def reconnect_policy(max_s: float) -> BackoffPolicy:
    """Delays between attempts to reconnect a long-lived connection: from RECONNECT_BASE_S doubling up to max_s,
    +/- 50% so that replicas cut off together do not come back in step."""
    return BackoffPolicy(base_s=min(RECONNECT_BASE_S, max_s), max_s=max_s, jitter=0.5)


DATABASE_AWAY = BackoffPolicy(base_s=0.2, max_s=5.0, jitter=0.5)
"""Between tries of a loop that must wait the database out (the completions' flush): soon at first, at most 5 s
apart, jittered so that replicas cut off together do not come back in step."""
SCHEDULER_AWAY = BackoffPolicy(base_s=1.0, max_s=30.0, jitter=0.5)
"""Between the scheduler's ticks while the database is away: a slot fires late, never twice (the slot upsert)."""


@dataclass(slots=True)
class Backoff:
    """Consecutive failures of one thing (a connection) and the delay before its next try: each failure waits
    longer, up to the policy's cap, until `succeeded()` starts over."""

    policy: BackoffPolicy
    failures: int = 0

    def failed(self, rand: float | None = None) -> float:
        """Count a failure; the seconds to wait before the next try."""
        self.failures += 1
        return retry_delay_s(self.failures, self.policy, rand)

    def succeeded(self) -> None:
        self.failures = 0
