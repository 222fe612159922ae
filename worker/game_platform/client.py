"""The game platform HTTP client (httpx.AsyncClient): pooling, timeouts, rate limit, retries, validation.

* The API key travels in the `X-API-Key` header; it is read from its SecretStr only to build that header and
  is never logged (the log lines name method, path, status and attempt only).
* 429 is retried after `Retry-After` (seconds or an HTTP date); 5xx, timeouts, connection errors and malformed
  bodies are retried with capped exponential backoff and jitter, up to `max_retries` times.
* 401/403 raise PlatformAuthError at once; any other 4xx raises PlatformRequestError (not retried).
* A body that does not match the contract raises MalformedResponse naming the field.
* A token bucket keeps the client under `rps` requests per second, so it does not provoke 429s by itself; the
  job passes `limiter`, the budget every process shares (ratelimit.SharedRateLimiter), instead.
"""

from __future__ import annotations

import email.utils
import functools
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import anyio
import httpx
import orjson
import structlog
from pydantic import BaseModel, SecretStr, ValidationError

from worker.game_platform.contract import (
    API_KEY_HEADER,
    BATCH_PATH,
    MAX_BATCH,
    MAX_PAGE,
    PLAYERS_PATH,
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    PlayerPage,
    PlayerStats,
    PlayerSummary,
    player_stats_path,
)
from worker.game_platform.errors import (
    GamePlatformError,
    MalformedResponse,
    PlatformAuthError,
    PlatformRequestError,
    PlatformUnavailable,
)
from worker.game_platform.ratelimit import RequestLimiter, TokenBucket
from worker.game_platform.settings import GamePlatformSettings

__all__ = ["GamePlatformClient", "backoff_delay", "parse_retry_after"]

log = structlog.get_logger("worker.game_platform.client")
M = TypeVar("M", bound=BaseModel)
_JSON_BODY = {"Content-Type": "application/json"}


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CAs, or SSL_CERT_FILE/SSL_CERT_DIR), built once per process: loading
    the CA bundle is CPU-heavy, and every new client paid it again (figure: docs/performance.md)."""
    return httpx.create_ssl_context()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with equal jitter: half fixed, half random (attempt counts from 0)."""
    ceiling = min(cap_s, base_s * (2.0**attempt))
    jitter = rng.uniform(0, ceiling / 2) if rng is not None else random.uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(
        self,
        reason: str,
        *,
        after_s: float | None = None,
        error: GamePlatformError | None = None,
        code: str = "unavailable",
    ):
        super().__init__(reason)
        self.reason = reason
        self.after_s = after_s
        self.error = error
        self.code = code


class GamePlatformClient:
    """Use as `async with GamePlatformClient.from_settings(settings) as client: ...`."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None,
        *,
        rps: float = 20.0,
        burst: float | None = None,
        concurrency: int = 8,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 15.0,
        total_timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.25,
        backoff_cap_s: float = 10.0,
        retry_after_cap_s: float = 120.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        limiter: RequestLimiter | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "worker-game-platform-sync/1"}
        self._has_key = api_key is not None and bool(api_key.get_secret_value())
        if api_key is not None and self._has_key:
            headers[API_KEY_HEADER] = api_key.get_secret_value()
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(
                connect=connect_timeout_s, read=read_timeout_s, write=read_timeout_s, pool=total_timeout_s
            ),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            follow_redirects=False,
            verify=_ssl_context(),
        )
        self._bucket: RequestLimiter = limiter if limiter is not None else TokenBucket(rps, burst)
        self._total_timeout_s = total_timeout_s
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._retry_after_cap_s = retry_after_cap_s
        self._sleep = sleep
        self.requests_sent = 0
        """HTTP requests sent, retries included."""
        self.retries = 0

    @classmethod
    def from_settings(cls, settings: GamePlatformSettings, **overrides: Any) -> GamePlatformClient:
        values: dict[str, Any] = {
            "rps": settings.game_platform_rps,
            "concurrency": settings.game_platform_concurrency,
            "connect_timeout_s": settings.game_platform_connect_timeout_s,
            "read_timeout_s": settings.game_platform_read_timeout_s,
            "total_timeout_s": settings.game_platform_total_timeout_s,
            "max_retries": settings.game_platform_max_retries,
        }
        values.update(overrides)
        return cls(settings.game_platform_base_url, settings.game_platform_api_key, **values)

    async def __aenter__(self) -> GamePlatformClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the API ------------------------------------------------------------------------------------
    async def fetch_stats(self, player_id: str) -> PlayerStats:
        """One player's stats; PlatformRequestError (status 404, code not_found) for an unknown player."""
        return await self._call("GET", player_stats_path(player_id), PlayerStats)

    async def fetch_stats_batch(self, player_ids: list[str]) -> BatchResponse:
        """Stats of up to MAX_BATCH players in one request; unknown players come back in `errors`."""
        if not 1 <= len(player_ids) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} player ids, not {len(player_ids)}")
        body = orjson.dumps(BatchRequest(player_ids=player_ids).model_dump())
        return await self._call("POST", BATCH_PATH, BatchResponse, content=body)

    async def list_players(self, *, page_size: int = MAX_PAGE) -> AsyncIterator[PlayerSummary]:
        """Every player the platform knows, following the pagination cursor."""
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": min(page_size, MAX_PAGE)}
            if cursor is not None:
                params["cursor"] = cursor
            page = await self._call("GET", PLAYERS_PATH, PlayerPage, params=params)
            for player in page.data:
                yield player
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # --- one call, with its retries -----------------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        content: bytes | None = None,
        params: dict[str, str | int] | None = None,
    ) -> M:
        if not self._has_key:
            raise PlatformAuthError("no game platform API key is configured (set GAME_PLATFORM_API_KEY)")
        attempt = 0
        while True:
            try:
                return await self._attempt(method, path, model, content=content, params=params)
            except _Retry as retry:
                if attempt >= self._max_retries:
                    if retry.error is not None:
                        raise retry.error from retry.error.__cause__
                    raise PlatformUnavailable(
                        f"game platform {method} {path} failed after {attempt + 1} attempts: {retry.reason}",
                        code=retry.code,
                    ) from retry.__cause__
                if retry.after_s is not None and retry.after_s > self._retry_after_cap_s:
                    raise PlatformUnavailable(
                        f"game platform {method} {path} asked to retry after {retry.after_s:g}s "
                        f"(more than {self._retry_after_cap_s:g}s): {retry.reason}",
                        code=retry.code,
                    ) from retry.__cause__
                delay = retry.after_s
                if delay is None:
                    delay = backoff_delay(attempt, self._backoff_base_s, self._backoff_cap_s)
                log.warning(
                    "game_platform.retry",
                    method=method,
                    path=path,
                    attempt=attempt + 1,
                    reason=retry.reason,
                    delay_s=round(delay, 3),
                )
                self.retries += 1
                attempt += 1
                await self._sleep(delay)

    async def _attempt(
        self, method: str, path: str, model: type[M], *, content: bytes | None, params: dict[str, str | int] | None
    ) -> M:
        await self._bucket.acquire()
        self.requests_sent += 1
        started = time.monotonic()
        try:
            with anyio.fail_after(self._total_timeout_s):
                response = await self._http.request(
                    method, path, content=content, params=params, headers=_JSON_BODY if content is not None else None
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _Retry(f"timed out after {time.monotonic() - started:.2f}s", code="timeout") from exc
        except httpx.HTTPError as exc:
            raise _Retry(f"connection error: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            try:
                return _parse(model, response, method, path)
            except MalformedResponse as exc:
                raise _Retry(str(exc), error=exc) from exc
        detail = _error_detail(response)
        if status in (401, 403):
            raise PlatformAuthError(
                f"game platform rejected the API key: HTTP {status}{detail} "
                "(check GAME_PLATFORM_API_KEY; the sync stopped without retrying)"
            )
        if status == 429:
            self._bucket.record_429()
            raise _Retry(
                f"HTTP 429{detail}", after_s=parse_retry_after(response.headers.get("Retry-After")), code="rate_limited"
            )
        if status >= 500:
            raise _Retry(f"HTTP {status}{detail}")
        code = _error_code(response)
        raise PlatformRequestError(f"game platform {method} {path}: HTTP {status}{detail}", status=status, code=code)


def _parse(model: type[M], response: httpx.Response, method: str, path: str) -> M:
    where = f"game platform {method} {path}"
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            snippet = response.content[:60].decode("utf-8", "replace")
            raise MalformedResponse(
                f"{where}: body is not JSON ({len(response.content)} bytes, starts {snippet!r})"
            ) from exc
        raise MalformedResponse(f"{where}: unexpected body: {_fields(exc)}") from exc


def _fields(exc: ValidationError) -> str:
    """`data.3.wins: Input should be a valid integer; ...`: each bad field named by its path in the body."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(the body)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _error_body(response: httpx.Response) -> ErrorResponse | None:
    try:
        return ErrorResponse.model_validate(response.json())
    except (ValueError, ValidationError):
        return None


def _error_code(response: httpx.Response) -> str | None:
    body = _error_body(response)
    return body.error.code if body else None


def _error_detail(response: httpx.Response) -> str:
    body = _error_body(response)
    if body is None:
        return ""
    message = body.error.message[:200]
    return f" {body.error.code}" + (f": {message}" if message else "")
