"""Logging set-up: structlog, JSON lines on stdout (console renderer on a TTY or when asked)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import orjson
import structlog

from worker.redaction import Redactor

__all__ = ["configure_logging", "install_redaction"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _dumps(obj: Any, **kw: Any) -> str:
    """orjson for the JSON lines: every job writes two of them, so rendering is on the hot path."""
    return orjson.dumps(obj, default=kw.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}


class _Clock:
    """UTC ISO-8601 timestamps with microseconds ("2026-11-30T05:06:07.123456Z"); the date-and-second part is
    formatted once per second (two lines per job made the general-purpose formatter a visible cost)."""

    second = -1
    prefix = ""

    @classmethod
    def now(cls) -> str:
        t = time.time()
        second = int(t)
        if second != cls.second:
            cls.prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            cls.second = second
        return f"{cls.prefix}{int((t - second) * 1_000_000):06d}Z"


def _add_level_and_timestamp(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog's add_log_level and TimeStamper(fmt="iso", utc=True) in one step."""
    event_dict["level"] = _LEVEL_NAMES.get(method, method)
    event_dict["timestamp"] = _Clock.now()
    return event_dict


class _StdoutLogger:
    """Writes rendered lines to the *current* sys.stdout (which tests and embedding apps may swap).

    Inside an event loop the lines are buffered and written together at the end of the loop iteration, with one
    write and one flush: every job logs two lines, and under PYTHONUNBUFFERED (the container's setting) each
    `write` is a system call of its own, which was a quarter of the daemon's CPU per job. Outside a loop, and
    at interpreter exit, what is buffered is written at once.
    """

    _pending: ClassVar[list[str]] = []
    _flush_on: ClassVar[asyncio.AbstractEventLoop | None] = None
    """The loop whose next iteration writes the pending lines (a loop may close before it does)."""

    def __init__(self, *_args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        pending = _StdoutLogger._pending
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            pending.append(message)
            _StdoutLogger._flush()
            return
        pending.append(message)
        if _StdoutLogger._flush_on is not loop:
            _StdoutLogger._flush_on = loop
            loop.call_soon(_StdoutLogger._flush)

    @staticmethod
    def _flush() -> None:
        _StdoutLogger._flush_on = None
        pending = _StdoutLogger._pending
        if not pending:
            return
        text = "\n".join(pending) + "\n"
        pending.clear()
        with contextlib.suppress(ValueError, OSError):  # stdout closed or gone: nothing left to say there
            sys.stdout.write(text)
            sys.stdout.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


atexit.register(_StdoutLogger._flush)  # lines logged in the loop's last iteration


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    *,
    extra_processors: list[Any] | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """`secrets`: values removed from every log line (see worker/redaction.py); the redactor runs last."""
    redactor = Redactor(secrets)
    if redactor:
        extra_processors = [*(extra_processors or []), redactor]
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_level_and_timestamp,
        structlog.processors.format_exc_info,
        *(extra_processors or []),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer(serializer=_dumps)
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=_StdoutLogger,
        cache_logger_on_first_use=False,
    )


def install_redaction(secrets: Iterable[str]) -> None:
    """Put a redactor for `secrets` just before the renderer of the current structlog configuration
    (replacing an earlier one), so that logging configured before the settings were known is covered too."""
    redactor = Redactor(secrets)
    processors = [p for p in structlog.get_config()["processors"] if not isinstance(p, Redactor)]
    if redactor:
        processors.insert(max(len(processors) - 1, 0), redactor)
    structlog.configure(processors=processors)
