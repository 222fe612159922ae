"""A game platform simulator: the contract of docs/game-platform-api.md served on loopback by uvicorn.

Deterministic: player `p00042`'s stats are a hash of (seed, player id, epoch), so two runs with the same seed
agree; bumping `epoch` (or one player's epoch) changes the figures. Configurable at run time through the
`Simulator` object: latency, a random error rate, a token-bucket rate limit (429 + Retry-After), players that
fail inside a batch answer, and a script of faults for the next requests:

    "500".."599"  that status with an error body       "429" / "429-date"  Retry-After in seconds / as a date
    "timeout"     hang `hang_s` seconds, then 504        "garbage"  200 with a body that is not JSON
    "truncated"   200 with the JSON cut in half         "wrong-shape"  200, valid JSON, a field of wrong type
    "401" / "403" the API key rejected

`echo_key`: every error message (error bodies, a batch answer's `errors`) quotes the API key the request carried,
as some platforms do (the worker must not store it: tests/test_security_stored_secrets.py).

Cheap to serve, so that a benchmark measures the client and not the simulator: each player's stats are
serialised once (orjson) and cached as bytes (`worker simulate-platform` does every player at start), a batch
answer is those bytes joined, a request body that is a plain list of ids is read with orjson (anything else goes
through BatchRequest, which words the 400), and all of it happens before the latency sleep, which counts from the
request's arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import random
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anyio
import orjson
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.game_platform.contract import (
    API_KEY_HEADER,
    BATCH_PATH,
    MAX_BATCH,
    MAX_PAGE,
    PLAYERS_PATH,
    BatchRequest,
)
from worker.game_platform.ratelimit import TokenBucket

__all__ = ["Simulator", "create_app", "player_id", "run_cli", "serve_simulator"]

_BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
FAULTS = ("429", "429-date", "timeout", "garbage", "truncated", "wrong-shape", "401", "403")


def player_id(index: int) -> str:
    """The simulator's player ids: p00000, p00001, ..."""
    return f"p{index:05d}"


@dataclass(slots=True)
class RequestRecord:
    at: float
    """time.monotonic() when the request arrived."""
    method: str
    path: str
    status: int = 0
    """0 while the request has no answer yet (a hanging "timeout" fault)."""
    players: int = 0


@dataclass
class Simulator:
    """The simulated platform's data and behaviour; every field may be changed while it serves."""

    seed: int = 42
    players: int = 1000
    api_key: str | None = None
    """None: any non-empty key is accepted (a missing key is still 401)."""
    latency_s: float = 0.0
    error_rate: float = 0.0
    """Share of requests answered 503 at random (seeded)."""
    rate_limit_rps: float | None = None
    rate_limit_burst: float | None = None
    retry_after_s: int = 1
    echo_key: bool = False
    """Error messages quote the API key the request carried."""
    hang_s: float = 5.0
    epoch: int = 0
    player_epochs: dict[str, int] = field(default_factory=dict)
    failing_players: set[str] = field(default_factory=set)
    """Players reported in a batch answer's `errors` with code `unavailable`."""
    faults: deque[str] = field(default_factory=deque)
    requests: list[RequestRecord] = field(default_factory=list)
    _rng: random.Random = field(init=False, repr=False)
    _bucket: TokenBucket | None = field(default=None, init=False, repr=False)
    _closing: anyio.Event | None = field(default=None, init=False, repr=False)

    def closing(self) -> anyio.Event:
        """Set when the server stops, so hanging requests end at once."""
        if self._closing is None:
            self._closing = anyio.Event()
        return self._closing

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def inject(self, *faults: str) -> None:
        """Queue faults for the next requests, one each, in order."""
        for fault in faults:
            if fault not in FAULTS and not (fault.isdigit() and 500 <= int(fault) <= 599):
                raise ValueError(f"unknown fault {fault!r}")
            self.faults.append(fault)

    def bump(self, *player_ids: str) -> None:
        """Change these players' figures (as if they played)."""
        for pid in player_ids:
            self.player_epochs[pid] = self.player_epochs.get(pid, 0) + 1

    def knows(self, pid: str) -> bool:
        return len(pid) == 6 and pid[0] == "p" and pid[1:].isdigit() and int(pid[1:]) < self.players

    def stats(self, pid: str) -> dict[str, Any]:
        return _stats(self.seed, pid, self.epoch + self.player_epochs.get(pid, 0))

    def stats_json(self, pid: str) -> bytes:
        """`stats(pid)` serialised (cached per seed, player and epoch)."""
        return _stats_json(self.seed, pid, self.epoch + self.player_epochs.get(pid, 0))

    def warm(self) -> None:
        """Serialise every player's current stats now, so that the first requests cost no more than later ones."""
        for i in range(min(self.players, _CACHED_PLAYERS)):
            self.stats_json(player_id(i))

    def rate_limited(self) -> bool:
        if self.rate_limit_rps is None:
            return False
        if self._bucket is None or self._bucket.rate != self.rate_limit_rps:
            self._bucket = TokenBucket(self.rate_limit_rps, self.rate_limit_burst)
        return not self._bucket.try_acquire()

    def requests_to(self, path: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == path]


_CACHED_PLAYERS = 65536


@functools.lru_cache(maxsize=_CACHED_PLAYERS)
def _stats(seed: int, pid: str, epoch: int) -> dict[str, Any]:
    h = hashlib.blake2b(f"{seed}:{pid}:{epoch}".encode(), digest_size=24).digest()
    games = int.from_bytes(h[0:4], "big") % 500
    wins = int.from_bytes(h[4:8], "big") % (games + 1)
    losses = int.from_bytes(h[8:12], "big") % (games - wins + 1)
    draws = int.from_bytes(h[12:16], "big") % (games - wins - losses + 1)
    changed = _BASE_TIME + timedelta(days=epoch, seconds=int.from_bytes(h[16:20], "big") % 86400)
    return {
        "player_id": pid,
        "games_played": games,
        "wins": wins,
        "losses": losses,
        "draws": draws,
        "rating": 800 + int.from_bytes(h[20:24], "big") % 1600,
        "updated_at": changed.isoformat().replace("+00:00", "Z"),
    }


@functools.lru_cache(maxsize=_CACHED_PLAYERS)
def _stats_json(seed: int, pid: str, epoch: int) -> bytes:
    return orjson.dumps(_stats(seed, pid, epoch))


def _json(raw: bytes) -> Response:
    return Response(raw, media_type="application/json")


def _batch_ids(raw: bytes) -> list[str] | None:
    """The player ids of a well-formed batch request body; None when it needs BatchRequest's full check."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    ids = body.get("player_ids") if type(body) is dict and len(body) == 1 else None
    if type(ids) is list and 1 <= len(ids) <= MAX_BATCH and all(type(pid) is str for pid in ids):
        return ids
    return None


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _echo(sim: Simulator, key: str | None) -> str:
    return f" (key {key})" if sim.echo_key else ""


async def _fault(sim: Simulator, fault: str, raw: bytes, key: str) -> Response:
    if fault in ("401", "403"):
        return _error(int(fault), "unauthorized" if fault == "401" else "forbidden",
                      "API key rejected" + _echo(sim, key))
    if fault == "429":
        return _error(429, "rate_limited", "slow down", {"Retry-After": str(sim.retry_after_s)})
    if fault == "429-date":
        when = datetime.now(UTC) + timedelta(seconds=sim.retry_after_s + 1)
        return _error(429, "rate_limited", "slow down", {"Retry-After": format_datetime(when, usegmt=True)})
    if fault == "timeout":
        with anyio.move_on_after(sim.hang_s):
            await sim.closing().wait()
        return _error(504, "timeout", "upstream timed out")
    if fault == "garbage":
        return Response(b"<html><body>502 Bad Gateway</body></html>", media_type="application/json")
    if fault == "truncated":
        return _json(raw[: len(raw) // 2])
    if fault == "wrong-shape":
        body = orjson.loads(raw)
        if isinstance(body, dict) and body.get("data"):
            body = {**body, "data": [{**body["data"][0], "wins": "many"}, *body["data"][1:]]}
        else:
            body = {"unexpected": True}
        return JSONResponse(body)
    return _error(int(fault), "server_error", f"injected {fault}" + _echo(sim, key))


async def _guarded(sim: Simulator, request: Request, arrived: float, raw: bytes) -> Response:
    """Auth, rate limit, latency and faults around a normal answer, the JSON body `raw`."""
    if sim.latency_s:  # latency = arrival to answer: the simulator's own work counts towards it
        await anyio.sleep(max(0.0, sim.latency_s - (time.monotonic() - arrived)))
    key = request.headers.get(API_KEY_HEADER)
    if not key or (sim.api_key is not None and key != sim.api_key):
        return _error(401, "unauthorized", "missing or invalid API key" + _echo(sim, key))
    if sim.rate_limited():
        return _error(429, "rate_limited", "rate limit exceeded", {"Retry-After": str(sim.retry_after_s)})
    if sim.faults:
        return await _fault(sim, sim.faults.popleft(), raw, key)
    if sim.error_rate and sim._rng.random() < sim.error_rate:
        return _error(503, "unavailable", "random failure")
    return _json(raw)


def create_app(sim: Simulator) -> Starlette:
    async def record(
        request: Request, players: int, answer: Awaitable[Response] | Response, arrived: float | None = None
    ) -> Response:
        entry = RequestRecord(arrived or time.monotonic(), request.method, request.url.path, players=players)
        sim.requests.append(entry)
        response = answer if isinstance(answer, Response) else await answer
        entry.status = response.status_code
        return response

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_players(request: Request) -> Response:
        arrived = time.monotonic()
        try:
            limit = int(request.query_params.get("limit", "100"))
            offset = int(request.query_params.get("cursor", "0"))
        except ValueError:
            return await record(request, 0, _error(400, "invalid_request", "limit and cursor must be integers"))
        if not (1 <= limit <= MAX_PAGE and offset >= 0):
            return await record(request, 0, _error(400, "invalid_request", f"limit must be 1..{MAX_PAGE}"))
        end = min(offset + limit, sim.players)
        data = [{"player_id": player_id(i), "name": f"Player {i}"} for i in range(offset, end)]
        raw = orjson.dumps({"data": data, "next_cursor": str(end) if end < sim.players else None})
        return await record(request, len(data), _guarded(sim, request, arrived, raw), arrived)

    async def one_player(request: Request) -> Response:
        arrived = time.monotonic()
        pid = request.path_params["player_id"]
        if not sim.knows(pid):
            return await record(request, 1, _error(404, "not_found", f"no player {pid}"))
        return await record(request, 1, _guarded(sim, request, arrived, sim.stats_json(pid)), arrived)

    async def batch(request: Request) -> Response:
        arrived = time.monotonic()
        raw = await request.body()
        ids = _batch_ids(raw)
        if ids is None:
            try:
                ids = BatchRequest.model_validate_json(raw).player_ids
            except ValidationError as exc:
                message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
                return await record(request, 0, _error(400, "invalid_request", message))
        data: list[bytes] = []
        errors: list[dict[str, str]] = []
        key = request.headers.get(API_KEY_HEADER)
        for pid in ids:
            if not sim.knows(pid):
                errors.append({"player_id": pid, "code": "not_found", "message": f"no player {pid}"})
            elif pid in sim.failing_players:
                errors.append({"player_id": pid, "code": "unavailable",
                               "message": "stats temporarily unavailable" + _echo(sim, key)})
            else:
                data.append(sim.stats_json(pid))
        body = b'{"data":[' + b",".join(data) + b'],"errors":' + orjson.dumps(errors) + b"}"
        return await record(request, len(ids), _guarded(sim, request, arrived, body), arrived)

    routes = [
        Route("/v1/health", health),
        Route(PLAYERS_PATH, list_players),
        Route(PLAYERS_PATH + "/{player_id}/stats", one_player),
        Route(BATCH_PATH, batch, methods=["POST"]),
    ]
    return Starlette(routes=routes)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the host process (a test, the demo) owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_simulator(sim: Simulator, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `sim` in this event loop; yields its base URL (port 0 = a free port)."""
    config = uvicorn.Config(
        create_app(sim),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    server = _EmbeddedServer(config)
    # A plain asyncio task, not a task group: a pytest fixture enters and leaves this in different tasks.
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise OSError(f"the simulator could not listen on {host}:{port}")
            await asyncio.sleep(0.005)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        sim.closing().set()
        server.should_exit = True
        await task


def run_cli(args: argparse.Namespace) -> int:
    """`worker simulate-platform`: serve until SIGINT/SIGTERM. Returns the exit code."""
    if not 0 <= args.error_rate <= 1 or args.players < 0 or args.latency_ms < 0 or not 0 <= args.port <= 65535:
        print("worker: error: --error-rate must be 0..1; --players, --latency-ms, --port >= 0", file=sys.stderr)
        return 2
    sim = Simulator(
        seed=args.seed,
        players=args.players,
        api_key=args.api_key,
        latency_s=args.latency_ms / 1000,
        error_rate=args.error_rate,
        rate_limit_rps=args.rate_limit_rps,
        rate_limit_burst=args.rate_limit_burst,
        retry_after_s=args.retry_after_s,
    )
    sim.warm()
    config = uvicorn.Config(
        create_app(sim),
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=args.access_log,
        lifespan="off",
        ws="none",
    )
    print(f"game platform simulator on http://{args.host}:{args.port} ({args.players} players)", flush=True)
    uvicorn.Server(config).run()
    return 0
