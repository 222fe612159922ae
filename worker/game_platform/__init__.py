"""The game platform integration: API contract, HTTP client, sync service, job, and a simulator.

Imports point down: task -> sync -> client -> contract/errors/ratelimit. The simulator serves the same
contract (docs/game-platform-api.md) and is used by the demo, the tests and the benchmark.
"""

from __future__ import annotations

import importlib
from typing import Any

# Exported names -> the module that defines them. Loaded on first use, so that a worker whose registry merely
# lists `game_platform_sync` does not import httpx and its transports until a sync actually runs.
_EXPORTS = {
    "GamePlatformClient": "client",
    "GamePlatformError": "errors",
    "MalformedResponse": "errors",
    "PlatformAuthError": "errors",
    "PlatformRequestError": "errors",
    "PlatformUnavailable": "errors",
    "SyncFailed": "errors",
    "SyncCounters": "sync",
    "sync_all_competitor_game_stats": "sync",
    "TASK_TYPE": "task",
    "GamePlatformSyncPayload": "task",
    "GamePlatformSettings": "settings",
    "game_platform_sync_task": "task",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'worker.game_platform' has no attribute {name!r}")
    return getattr(importlib.import_module(f"worker.game_platform.{module}"), name)
