"""The game platform simulator as a pytest fixture, and helpers to seed competitors.

Use from a test module with `pytest_plugins = ["tests.support.game_platform"]`; then a test asks for
`platform` and gets the running simulator (real HTTP on 127.0.0.1, a free port) and ready-made settings.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from tests.support.daemon import make_settings
from worker.game_platform.client import GamePlatformClient
from worker.game_platform.simulator import Simulator, player_id, serve_simulator
from worker.settings import Settings
from worker.sql import queries

API_KEY = "test-platform-key-7f3c9a"


@dataclass
class Platform:
    sim: Simulator
    url: str
    env: pytest.MonkeyPatch | None = None

    def settings(self, database_url: str, **overrides: Any) -> Settings:
        """The worker's settings; the game platform's own (GamePlatformSettings, read from the environment like in
        a deployment) are set in this test's environment."""
        values: dict[str, Any] = {
            "game_platform_base_url": self.url,
            "game_platform_api_key": API_KEY,
            "game_platform_rps": 1000.0,
            "game_platform_concurrency": 4,
            "game_platform_batch_size": 100,
            "game_platform_read_timeout_s": 2.0,
            "game_platform_total_timeout_s": 5.0,
            "game_platform_max_retries": 3,
        }
        values.update(overrides)
        return make_settings(database_url, **self.use(values))

    def use(self, values: dict[str, Any]) -> dict[str, Any]:
        """Put the game platform's settings among `values` into this test's environment (where the task reads
        them, like in a deployment); returns the rest, the worker's own settings."""
        values = dict(values)
        assert self.env is not None
        for name in [k for k in values if k.startswith("game_platform_")]:
            value = values.pop(name)
            secret = value.get_secret_value() if isinstance(value, SecretStr) else value
            unprefixed = name in ("game_platform_base_url", "game_platform_api_key")
            env_name = name.upper() if unprefixed else f"WORKER_{name.upper()}"
            self.env.setenv(env_name, str(secret))
        return values

    def client(self, **overrides: Any) -> GamePlatformClient:
        values: dict[str, Any] = {
            "rps": 1000.0,
            "concurrency": 4,
            "read_timeout_s": 2.0,
            "total_timeout_s": 5.0,
            "max_retries": 3,
            "backoff_base_s": 0.01,
            "backoff_cap_s": 0.05,
        }
        values.update(overrides)
        key = values.pop("api_key", SecretStr(API_KEY))
        return GamePlatformClient(self.url, key, **values)

    def batch_requests(self) -> int:
        return len(self.sim.requests_to("/v1/stats/batch"))


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    """A simulated game platform (1,000 players, seed 42, key API_KEY) serving on a free loopback port."""
    sim = Simulator(seed=42, players=1000, api_key=API_KEY)
    async with serve_simulator(sim) as url:
        yield Platform(sim, url, monkeypatch)


async def seed_competitors(
    pool: asyncpg.Pool, count: int, *, coach_id: uuid.UUID | None = None, start: int = 0
) -> list[uuid.UUID]:
    """`count` competitors of one coach, players p{start:05d}... (all known to the simulator when < 1000)."""
    coach = coach_id or uuid.uuid4()
    indexes = range(start, start + count)
    rows = await pool.fetch(
        queries("game_platform")["insert_competitors"],
        [coach] * count,
        [f"Competitor {i}" for i in indexes],
        [player_id(i) for i in indexes],
    )
    return [r["id"] for r in rows]
