"""The game platform integration: API contract, HTTP client, sync service, job, and a simulator.

Imports point down: task -> sync -> client -> contract/errors/ratelimit. The simulator serves the same
contract (docs/game-platform-api.md) and is used by the demo, the tests and the benchmark.
"""

from __future__ import annotations

from worker.game_platform.client import GamePlatformClient
from worker.game_platform.errors import (
    GamePlatformError,
    MalformedResponse,
    PlatformAuthError,
    PlatformRequestError,
    PlatformUnavailable,
    SyncFailed,
)
from worker.game_platform.sync import SyncCounters, sync_all_competitor_game_stats
from worker.game_platform.task import TASK_TYPE, GamePlatformSyncPayload, game_platform_sync_task

__all__ = [
    "TASK_TYPE",
    "GamePlatformClient",
    "GamePlatformError",
    "GamePlatformSyncPayload",
    "MalformedResponse",
    "PlatformAuthError",
    "PlatformRequestError",
    "PlatformUnavailable",
    "SyncCounters",
    "SyncFailed",
    "game_platform_sync_task",
    "sync_all_competitor_game_stats",
]
