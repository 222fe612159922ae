"""The game platform's own settings: the same environment variables as before they moved out of the core
(`GAME_PLATFORM_BASE_URL`, `GAME_PLATFORM_API_KEY`, `WORKER_GAME_PLATFORM_*`), loaded and validated when the
worker starts (a bad value: one line, exit 2) and handed to the task as `ctx.config(GamePlatformSettings)`."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GamePlatformSettings"]


class GamePlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WORKER_", env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True,
        frozen=True,
    )

    game_platform_base_url: str = Field(
        default="http://127.0.0.1:8090",
        validation_alias=AliasChoices("GAME_PLATFORM_BASE_URL", "WORKER_GAME_PLATFORM_BASE_URL"),
        description="Base URL of the game platform API.",
    )
    game_platform_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("GAME_PLATFORM_API_KEY", "WORKER_GAME_PLATFORM_API_KEY"),
        description="API key of the game platform (sent as a header, never logged).",
    )
    game_platform_rps: float = Field(
        default=20.0, gt=0, le=10000,
        description="Requests per second to the game platform per API key, in total across every process.",
    )
    game_platform_fallback_share: float = Field(
        default=0.25, gt=0, le=1,
        description=(
            "Share of WORKER_GAME_PLATFORM_RPS one process uses while the database (the shared budget) is "
            "unreachable; at most 1 / the number of processes."
        ),
    )
    game_platform_concurrency: int = Field(default=8, ge=1, le=256, description="Requests in flight.")
    game_platform_batch_size: int = Field(default=100, ge=1, le=1000, description="Player ids per request.")
    game_platform_connect_timeout_s: float = Field(default=5.0, gt=0, le=120, description="Connect timeout.")
    game_platform_read_timeout_s: float = Field(default=15.0, gt=0, le=600, description="Read timeout.")
    game_platform_total_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="Whole-request timeout, retries excluded."
    )
    game_platform_max_retries: int = Field(default=4, ge=0, le=20, description="Retries per request.")

    @field_validator("game_platform_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")
