"""The game platform's errors: every httpx error and bad answer is translated into one of these.

All are children of :class:`worker.errors.WorkerError`. Which of them the client retries, and what the sync
does with each, is written in docs/game-platform-api.md ("Errors and retries").
"""

from __future__ import annotations

from worker.errors import WorkerError

__all__ = [
    "GamePlatformError",
    "MalformedResponse",
    "PlatformAuthError",
    "PlatformRequestError",
    "PlatformUnavailable",
    "SyncFailed",
]


class GamePlatformError(WorkerError):
    """Root of the game platform errors."""


class PlatformAuthError(GamePlatformError):
    """401/403 (or no API key configured): a configuration error; the sync stops at once."""


class PlatformRequestError(GamePlatformError):
    """Any other 4xx: the request itself is wrong; retrying cannot help."""

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class PlatformUnavailable(GamePlatformError):
    """5xx, 429, timeouts or connection errors that outlasted every retry. `code` names the last failure:
    `rate_limited` (429), `timeout`, or `unavailable` (5xx, connection errors)."""

    def __init__(self, message: str, *, code: str = "unavailable") -> None:
        super().__init__(message)
        self.code = code


class MalformedResponse(GamePlatformError):
    """The body is not JSON or does not match the contract; the message names the field."""


class SyncFailed(GamePlatformError):
    """The sync as a whole failed (every competitor failed): the attempt fails and the queue retries."""

    def __init__(self, message: str, summary: dict[str, object]) -> None:
        super().__init__(message)
        self.summary = summary
