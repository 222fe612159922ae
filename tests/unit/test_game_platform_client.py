"""The game platform client against the real simulator over HTTP on loopback."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import structlog
from pydantic import SecretStr

from tests.support.game_platform import API_KEY, Platform
from worker.errors import WorkerError
from worker.game_platform.client import backoff_delay, parse_retry_after
from worker.game_platform.errors import (
    MalformedResponse,
    PlatformAuthError,
    PlatformRequestError,
    PlatformUnavailable,
)
from worker.game_platform.simulator import player_id

BATCH = "/v1/stats/batch"


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    delays = [backoff_delay(a, 1.0, 8.0) for a in range(6)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert len({backoff_delay(3, 1.0, 8.0) for _ in range(20)}) > 1


async def test_batch_fetch_returns_stats_and_unknown_players_as_errors(platform: Platform) -> None:
    async with platform.client() as client:
        answer = await client.fetch_stats_batch([player_id(1), player_id(2), "nobody"])
    assert [s.player_id for s in answer.data] == [player_id(1), player_id(2)]
    assert answer.data[0].model_dump(mode="json") | {"updated_at": None} == platform.sim.stats(player_id(1)) | {
        "updated_at": None
    }
    assert [(e.player_id, e.code) for e in answer.errors] == [("nobody", "not_found")]


async def test_players_listing_follows_the_cursor_to_the_end(platform: Platform) -> None:
    platform.sim.players = 1203
    async with platform.client() as client:
        ids = [p.player_id async for p in client.list_players(page_size=500)]
    assert ids == [player_id(i) for i in range(1203)]
    assert len(platform.sim.requests_to("/v1/players")) == 3


async def test_429_waits_at_least_retry_after_then_succeeds(platform: Platform) -> None:
    platform.sim.retry_after_s = 1
    platform.sim.inject("429")
    waits: list[float] = []
    async with platform.client(sleep=_recorded(waits)) as client:  # the wait is recorded, not slept
        answer = await client.fetch_stats_batch([player_id(5)])
    assert len(answer.data) == 1
    assert [r.status for r in platform.sim.requests_to(BATCH)] == [429, 200]
    assert len(waits) == 1 and waits[0] >= 1.0


async def test_429_with_an_http_date_is_honoured(platform: Platform) -> None:
    platform.sim.retry_after_s = 1
    platform.sim.inject("429-date")
    waits: list[float] = []
    async with platform.client(sleep=_recorded(waits)) as client:
        await client.fetch_stats_batch([player_id(5)])
    # The date says "now + 2 s" at second precision: the client waits at least one whole second.
    assert len(waits) == 1 and waits[0] >= 1.0
    assert [r.status for r in platform.sim.requests_to(BATCH)] == [429, 200]


def _recorded(waits: list[float]) -> Callable[[float], Awaitable[None]]:
    """A sleep for the client that records how long it was asked to wait and returns at once."""

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return sleep


async def test_retry_after_beyond_the_cap_gives_up_at_once(platform: Platform) -> None:
    platform.sim.retry_after_s = 600
    platform.sim.inject("429")
    async with platform.client(retry_after_cap_s=5) as client:
        with pytest.raises(PlatformUnavailable, match="retry after 600s"):
            await client.fetch_stats_batch([player_id(5)])
    assert len(platform.sim.requests_to(BATCH)) == 1


async def test_5xx_is_retried_then_succeeds(platform: Platform) -> None:
    platform.sim.inject("503", "500", "502")
    async with platform.client(max_retries=3) as client:
        answer = await client.fetch_stats_batch([player_id(7)])
        assert client.retries == 3
    assert len(answer.data) == 1
    assert [r.status for r in platform.sim.requests_to(BATCH)] == [503, 500, 502, 200]


async def test_5xx_beyond_max_retries_raises_platform_unavailable(platform: Platform) -> None:
    platform.sim.inject("503", "503", "503")
    async with platform.client(max_retries=2) as client:
        with pytest.raises(PlatformUnavailable, match=r"failed after 3 attempts: HTTP 503") as info:
            await client.fetch_stats_batch([player_id(7)])
    assert isinstance(info.value, WorkerError)


async def test_a_timeout_is_retried(platform: Platform) -> None:
    platform.sim.hang_s = 2.0
    platform.sim.inject("timeout")
    async with platform.client(read_timeout_s=0.2) as client:
        answer = await client.fetch_stats_batch([player_id(8)])
    assert len(answer.data) == 1
    assert len(platform.sim.requests_to(BATCH)) == 2


async def test_connection_refused_raises_platform_unavailable_from_the_httpx_error() -> None:
    from worker.game_platform.client import GamePlatformClient

    async with GamePlatformClient(
        "http://127.0.0.1:9", SecretStr("k"), max_retries=1, backoff_base_s=0.01, backoff_cap_s=0.02
    ) as client:
        with pytest.raises(PlatformUnavailable, match="connection error") as info:
            await client.fetch_stats(player_id(1))
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("fault", ["garbage", "truncated"])
async def test_a_body_that_is_not_json_is_retried_then_reported(platform: Platform, fault: str) -> None:
    platform.sim.inject(fault, fault)
    async with platform.client(max_retries=1) as client:
        with pytest.raises(MalformedResponse, match="body is not JSON"):
            await client.fetch_stats_batch([player_id(9)])
        platform.sim.inject(fault)
        answer = await client.fetch_stats_batch([player_id(9)])
    assert len(answer.data) == 1


async def test_an_unexpected_body_names_the_field(platform: Platform) -> None:
    platform.sim.inject("wrong-shape")
    async with platform.client(max_retries=0) as client:
        with pytest.raises(MalformedResponse, match=r"data\.0\.wins: Input should be a valid integer"):
            await client.fetch_stats_batch([player_id(9), player_id(10)])


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_key_fails_at_once_without_retrying(platform: Platform, status: int) -> None:
    platform.sim.inject(str(status))
    async with platform.client(max_retries=5) as client:
        with pytest.raises(PlatformAuthError, match=f"HTTP {status}.*GAME_PLATFORM_API_KEY"):
            await client.fetch_stats_batch([player_id(1)])
    assert len(platform.sim.requests_to(BATCH)) == 1


async def test_a_wrong_key_is_rejected_and_never_appears_in_logs_or_errors(platform: Platform) -> None:
    wrong = "wrong-key-d41d8cd9"
    with structlog.testing.capture_logs() as logs:
        async with platform.client(api_key=SecretStr(wrong)) as client:
            with pytest.raises(PlatformAuthError) as info:
                await client.fetch_stats_batch([player_id(1)])
        platform.sim.inject("503")
        async with platform.client() as client:
            await client.fetch_stats_batch([player_id(1)])
    assert any(e["event"] == "game_platform.retry" for e in logs)
    assert wrong not in str(info.value) and wrong not in str(logs)
    assert API_KEY not in str(logs)


async def test_no_configured_key_fails_before_any_request(platform: Platform) -> None:
    async with platform.client(api_key=None) as client:
        with pytest.raises(PlatformAuthError, match="no game platform API key"):
            await client.fetch_stats(player_id(1))
    assert platform.sim.requests == []


async def test_other_4xx_is_permanent(platform: Platform) -> None:
    async with platform.client(max_retries=3) as client:
        with pytest.raises(PlatformRequestError, match="HTTP 404 not_found") as info:
            await client.fetch_stats(player_id(5000))
    assert (info.value.status, info.value.code) == (404, "not_found")
    assert len(platform.sim.requests) == 1


async def test_the_client_rate_limit_keeps_it_under_the_platform_limit(platform: Platform) -> None:
    platform.sim.rate_limit_rps = 50
    platform.sim.rate_limit_burst = 5
    async with platform.client(rps=40, burst=2, max_retries=0) as client:
        started = time.monotonic()
        for i in range(30):
            await client.fetch_stats(player_id(i))
        elapsed = time.monotonic() - started
    assert [r.status for r in platform.sim.requests] == [200] * 30
    # 30 requests at 40/s with a burst of 2 cannot finish before (30 - 2) / 40 s.
    assert elapsed >= (30 - 2) / 40 - 0.01


async def test_the_platform_answers_429_when_its_limit_is_exceeded(platform: Platform) -> None:
    platform.sim.rate_limit_rps = 5
    platform.sim.rate_limit_burst = 2
    async with platform.client(max_retries=0, retry_after_cap_s=0.5) as client:
        for i in range(2):
            await client.fetch_stats(player_id(i))
        with pytest.raises(PlatformUnavailable, match="429"):
            await client.fetch_stats(player_id(3))


def test_simulate_platform_rejects_bad_options_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli.main import main

    assert main(["simulate-platform", "--error-rate", "2"]) == 2
    assert "--error-rate must be 0..1" in capsys.readouterr().err
