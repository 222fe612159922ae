"""The game platform API contract as code: paths, the auth header, and the pydantic models of every body.

docs/game-platform-api.md is the prose version of this same contract; the client and the simulator both use
these models, so they cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "API_KEY_HEADER",
    "BATCH_PATH",
    "MAX_BATCH",
    "MAX_PAGE",
    "PLAYERS_PATH",
    "PLAYER_ID_PATTERN",
    "BatchRequest",
    "BatchResponse",
    "ErrorBody",
    "ErrorResponse",
    "PlayerError",
    "PlayerPage",
    "PlayerStats",
    "PlayerSummary",
    "player_stats_path",
]

API_KEY_HEADER = "X-API-Key"
PLAYERS_PATH = "/v1/players"
BATCH_PATH = "/v1/stats/batch"
MAX_BATCH = 100
"""Most player ids one batch request may carry."""
MAX_PAGE = 500
"""Largest `limit` of the players listing."""
PLAYER_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_PLAYER_ID = re.compile(PLAYER_ID_PATTERN)


def player_stats_path(player_id: str) -> str:
    if not _PLAYER_ID.match(player_id):
        raise ValueError(f"invalid player id {player_id!r}")
    return f"{PLAYERS_PATH}/{player_id}/stats"


class _Body(BaseModel):
    # Unknown fields are ignored (the platform may add some); missing or mistyped ones are errors.
    model_config = ConfigDict(extra="ignore", frozen=True)


class PlayerStats(_Body):
    player_id: str = Field(pattern=PLAYER_ID_PATTERN)
    games_played: int = Field(ge=0, le=2_000_000_000)
    wins: int = Field(ge=0, le=2_000_000_000)
    losses: int = Field(ge=0, le=2_000_000_000)
    draws: int = Field(ge=0, le=2_000_000_000)
    rating: int = Field(ge=-2_000_000_000, le=2_000_000_000)
    updated_at: AwareDatetime

    @model_validator(mode="after")
    def _results_fit_games(self) -> PlayerStats:
        if self.wins + self.losses + self.draws > self.games_played:
            raise ValueError("wins + losses + draws exceeds games_played")
        return self


class PlayerError(_Body):
    player_id: str
    code: Literal["not_found", "unavailable"]
    message: str = ""


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    player_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResponse(_Body):
    data: list[PlayerStats]
    errors: list[PlayerError] = Field(default_factory=list)


class PlayerSummary(_Body):
    player_id: str = Field(pattern=PLAYER_ID_PATTERN)
    name: str


class PlayerPage(_Body):
    data: list[PlayerSummary]
    next_cursor: str | None = None


class ErrorBody(_Body):
    code: str
    message: str = ""


class ErrorResponse(_Body):
    error: ErrorBody
