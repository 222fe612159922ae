from datetime import UTC, datetime, timedelta

import pytest

from worker.backoff import BackoffPolicy, next_retry_at, retry_delay_s


def test_delay_doubles_per_attempt_without_jitter() -> None:
    policy = BackoffPolicy(base_s=2, max_s=1000, jitter=0)
    assert [retry_delay_s(a, policy) for a in (1, 2, 3, 4)] == [2, 4, 8, 16]


def test_delay_is_capped_at_max() -> None:
    policy = BackoffPolicy(base_s=2, max_s=30, jitter=0)
    assert retry_delay_s(10, policy) == 30
    assert retry_delay_s(10_000, policy) == 30  # huge attempt numbers stay finite


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999])
def test_jitter_stays_within_its_band_and_under_the_cap(rand: float) -> None:
    policy = BackoffPolicy(base_s=10, max_s=100, jitter=0.2)
    d = retry_delay_s(2, policy, rand=rand)
    assert 16 <= d <= 24
    capped = retry_delay_s(50, policy, rand=rand)
    assert 80 <= capped <= 100


def test_jitter_spreads_delays() -> None:
    policy = BackoffPolicy(base_s=10, max_s=100, jitter=0.5)
    assert retry_delay_s(1, policy, rand=0.0) < retry_delay_s(1, policy, rand=0.99)


def test_next_retry_at_adds_the_delay_to_now() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    policy = BackoffPolicy(base_s=5, max_s=60, jitter=0)
    assert next_retry_at(3, now, policy) == now + timedelta(seconds=20)


@pytest.mark.parametrize(
    "kwargs", [{"base_s": 0}, {"base_s": 10, "max_s": 5}, {"jitter": 1.5}, {"factor": 0.5}]
)
def test_invalid_policy_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError):
        retry_delay_s(0, BackoffPolicy())
