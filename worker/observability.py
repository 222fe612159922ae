"""Logging set-up: structlog, JSON lines on stdout (console renderer on a TTY or when asked)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterable
from typing import Any, Literal

import orjson
import structlog

from worker.redaction import Redactor

__all__ = ["configure_logging", "install_redaction"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _dumps(obj: Any, **kw: Any) -> str:
    """orjson for the JSON lines: every job writes two of them, so rendering is on the hot path."""
    return orjson.dumps(obj, default=kw.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()


class _StdoutLogger:
    """Writes each rendered line to the *current* sys.stdout (which tests and embedding apps may swap).

    Inside an event loop the flush is coalesced: lines written during one loop iteration go out with one flush
    at its end (a write system call per line was a tenth of the daemon's CPU per job); outside a loop every
    line is flushed at once.
    """

    _flush_scheduled = False

    def __init__(self, *_args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        out = sys.stdout
        out.write(message + "\n")
        if _StdoutLogger._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            out.flush()
            return
        _StdoutLogger._flush_scheduled = True
        loop.call_soon(_StdoutLogger._flush)

    @staticmethod
    def _flush() -> None:
        _StdoutLogger._flush_scheduled = False
        with contextlib.suppress(ValueError, OSError):  # stdout closed or gone: nothing left to say there
            sys.stdout.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


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
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
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
