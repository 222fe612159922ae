"""Logging set-up: structlog, JSON lines on stdout (console renderer on a TTY or when asked)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import orjson
import structlog

from worker.redaction import Redactor

__all__ = ["configure_logging", "install_redaction", "job_event", "job_lines"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _dumps(obj: Any, **kw: Any) -> str:
    """orjson for the JSON lines: every job writes two of them, so rendering is on the hot path."""
    return orjson.dumps(obj, default=kw.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}
EventDict = MutableMapping[str, Any]


class _Clock:
    """UTC ISO-8601 timestamps with microseconds ("2026-11-30T05:06:07.123456Z"); the date-and-second part is
    formatted once per second: a job's two lines cost no date formatting of their own."""

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


def _add_level_and_timestamp(_logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """structlog's add_log_level and TimeStamper(fmt="iso", utc=True) in one step."""
    event_dict["level"] = _LEVEL_NAMES.get(method, method)
    event_dict["timestamp"] = _Clock.now()
    return event_dict


class _StdoutLogger:
    """Writes rendered lines to the *current* sys.stdout (which tests and embedding apps may swap).

    Inside an event loop the lines are buffered and written together at the end of the loop iteration, with one
    write and one flush: every job logs two lines, and under PYTHONUNBUFFERED (the container's setting) each
    `write` is a system call of its own, so a loop iteration makes one system call however many lines it logs.
    Outside a loop, and at interpreter exit, what is buffered is written at once.
    """

    _pending: ClassVar[list[str]] = []
    _flush_on: ClassVar[asyncio.AbstractEventLoop | None] = None
    """The loop whose next iteration writes the pending lines (a loop may close before it does)."""
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *_args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        _StdoutLogger.write(message)

    @staticmethod
    def write(message: str) -> None:
        _StdoutLogger.write_lines((message,))

    @staticmethod
    def write_lines(messages: Iterable[str]) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with _StdoutLogger._lock:  # another thread may log meanwhile (a line is never dropped between them)
            _StdoutLogger._pending.extend(messages)
            if loop is None or _StdoutLogger._flush_on is loop:
                schedule = False
            else:
                _StdoutLogger._flush_on = loop
                schedule = True
        if loop is None:
            _StdoutLogger._flush()
        elif schedule:
            loop.call_soon(_StdoutLogger._flush)

    @staticmethod
    def _flush() -> None:
        with _StdoutLogger._lock:
            _StdoutLogger._flush_on = None
            lines, _StdoutLogger._pending = _StdoutLogger._pending, []
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        with contextlib.suppress(ValueError, OSError):  # stdout closed or gone: nothing left to say there
            sys.stdout.write(text)
            sys.stdout.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


atexit.register(_StdoutLogger._flush)  # lines logged in the loop's last iteration


class _JSONLines(structlog.processors.JSONRenderer):
    """The JSON renderer configure_logging() installs (a class of its own, so that `job_lines` can tell that
    the configuration is still the standard one)."""


_LEVEL_OF_WRAPPER = {structlog.make_filtering_bound_logger(n): n for n in _LEVELS.values()}

# Per-job lines carry identity fields: values that recur (event, task_type, worker_id: checked once per distinct
# value) and values that the daemon's call sites write as a UUID, an ISO-8601 timestamp or a number (job_id,
# retry_at, attempt, duration_ms: checked only when some secret could be spelled in that alphabet). Every other
# field (error, exception, a handler's own, the bound context) is free text and scanned. Guarded by
# tests/test_redaction.py: test_a_job_success_line_is_not_scanned_while_an_error_field_with_a_secret_is_redacted
# and test_job_lines_redact_identity_fields_that_hold_a_secret.
_REPEATED = ("event", "task_type", "worker_id")
_ID_SHAPED = ("job_id", "retry_at", "attempt", "duration_ms")
_IDENTITY_FIELDS = frozenset(_REPEATED + _ID_SHAPED)
# The keys of a line that `_JobLines.job` renders from a template; a context variable of the same name sends the
# line through the general path, where the call's own field wins.
_TEMPLATE_KEYS = frozenset({*_IDENTITY_FIELDS, "level", "timestamp"})
_METHOD_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _JobLines:
    """Renders a batch of per-job lines exactly as the standard configuration's processors would
    (merge_contextvars, level and timestamp, format_exc_info, the redactor, the JSON renderer), without
    structlog's per-call machinery, and writes them together when the batch ends: a job's lines cost their
    rendering only. The context variables and the timestamp are read once, when the batch starts: its lines are
    one moment's (a claim's jobs, a flush's acknowledgements)."""

    __slots__ = ("context", "lines", "min_level", "redactor", "templates", "timestamp")

    def __init__(self, min_level: int, redactor: Redactor | None) -> None:
        self.min_level = min_level
        self.redactor = redactor
        self.context = structlog.contextvars.get_contextvars()
        if redactor is not None and self.context:  # redacted once for the batch, merged into every line after
            self.context = {k: redactor.redact(v) for k, v in self.context.items()}
        self.timestamp = _Clock.now()
        self.lines: list[str] = []
        self.templates: dict[tuple[str, str, str, str], tuple[str, str] | None] = {}

    def debug(self, event: str, **fields: Any) -> None:
        if self.min_level <= logging.DEBUG:
            self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        if self.min_level <= logging.INFO:
            self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        if self.min_level <= logging.WARNING:
            self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        if self.min_level <= logging.ERROR:
            self._emit("error", event, fields)

    def _emit(self, method: str, event: str, fields: dict[str, Any]) -> None:
        fields["event"] = event
        event_dict: EventDict = fields
        if "exc_info" in event_dict:
            event_dict = structlog.processors.format_exc_info(None, method, event_dict)
        if self.redactor is not None:
            _redact_job_line(self.redactor, event_dict)
        if self.context:
            for key, value in self.context.items():  # merge_contextvars: the call's own fields win
                event_dict.setdefault(key, value)
        event_dict["level"] = method
        event_dict["timestamp"] = self.timestamp
        self.lines.append(orjson.dumps(event_dict, option=orjson.OPT_NON_STR_KEYS).decode())  # as _dumps

    def job(
        self, method: str, event: str, job_id: uuid.UUID, task_type: str, attempt: int, worker_id: str,
        duration_ms: int | None = None,
    ) -> None:
        """One job's identity line (see `job_event`), the same text as `_emit` renders for it, from a template made
        once per batch for each (level, event, task type, worker id): the job's id, attempt and duration are the
        only values that change, and their text needs no escaping. Lines the template cannot render exactly (a
        secret that could be spelled in an id, a context variable named like one of the line's keys) take the
        general path (tests/unit/test_logging.py: test_job_event_lines_equal_the_general_path_s)."""
        if _METHOD_LEVELS[method] < self.min_level:
            return
        key = (method, event, task_type, worker_id)
        try:
            template = self.templates[key]
        except KeyError:
            template = self.templates[key] = self._template(method, event, task_type, worker_id)
        if (
            template is None or not isinstance(job_id, uuid.UUID) or type(attempt) is not int
            or (duration_ms is not None and type(duration_ms) is not int)
        ):
            fields: dict[str, Any] = {"job_id": str(job_id), "task_type": task_type, "attempt": attempt}
            if duration_ms is not None:
                fields["duration_ms"] = duration_ms
            fields["worker_id"] = worker_id
            self._emit(method, event, fields)
            return
        middle, tail = template
        if duration_ms is None:
            self.lines.append(f'{{"job_id":"{job_id!s}{middle}{attempt}{tail}')
        else:
            self.lines.append(f'{{"job_id":"{job_id!s}{middle}{attempt},"duration_ms":{duration_ms}{tail}')

    def _template(self, method: str, event: str, task_type: str, worker_id: str) -> tuple[str, str] | None:
        """The text around a line's job id and attempt, or None where only the general path renders it exactly."""
        if not isinstance(event, str) or not isinstance(task_type, str) or not isinstance(worker_id, str):
            return None
        if self.context and not _TEMPLATE_KEYS.isdisjoint(self.context):
            return None
        if self.redactor is not None:
            if self.redactor.fits_ids:
                return None
            event, task_type, worker_id = self.redactor.redact_repeated((event, task_type, worker_id))
        try:
            context = orjson.dumps(self.context, option=orjson.OPT_NON_STR_KEYS).decode()[1:-1] if self.context else ""
        except TypeError:
            return None

        def text(value: str) -> str:
            return orjson.dumps(value).decode()

        middle = f'","task_type":{text(task_type)},"attempt":'
        tail = (
            f',"worker_id":{text(worker_id)},"event":{text(event)}{"," * bool(context)}{context},'
            f'"level":{text(method)},"timestamp":{text(self.timestamp)}}}'
        )
        return middle, tail


def _redact_job_line(redactor: Redactor, fields: EventDict) -> None:
    """The redactor's processor for one per-job line: a subset test and a memo look-up when the line holds
    nothing but identity fields (see _IDENTITY_FIELDS)."""
    if not _IDENTITY_FIELDS.issuperset(fields):
        for key in fields.keys() - _IDENTITY_FIELDS:
            fields[key] = redactor.redact(fields[key])
    get = fields.get
    repeated = (get("event"), get("task_type"), get("worker_id"))
    cleaned = redactor.redact_repeated(repeated)
    if cleaned != repeated:
        for key, value in zip(_REPEATED, cleaned, strict=True):
            if value is not None:
                fields[key] = value
    if redactor.fits_ids:
        for key in _ID_SHAPED:
            if key in fields:
                fields[key] = redactor.redact(fields[key])


def job_event(
    blog: Any, method: str, event: str, job_id: uuid.UUID, task_type: str, attempt: int, worker_id: str,
    duration_ms: int | None = None,
) -> None:
    """`blog.<method>(event, job_id=str(job_id), task_type=..., attempt=..., [duration_ms=...,] worker_id=...)`
    for a logger from `job_lines`: the per-job lines of the daemon's hot path (a claim's `job.claimed`, a flush's
    `job.succeeded`), rendered from a per-batch template under the standard configuration."""
    if type(blog) is _JobLines:
        blog.job(method, event, job_id, task_type, attempt, worker_id, duration_ms)
        return
    fields: dict[str, Any] = {"job_id": str(job_id), "task_type": task_type, "attempt": attempt}
    if duration_ms is not None:
        fields["duration_ms"] = duration_ms
    fields["worker_id"] = worker_id
    getattr(blog, method)(event, **fields)


@contextlib.contextmanager
def job_lines(logger: Any) -> Iterator[Any]:
    """A logger for one batch of per-job lines (`debug`, `info`, `warning`, `error`), written when the block
    ends. Under the configuration that configure_logging() made for JSON lines it renders them in one step (the
    same lines as structlog's); under any other (the console renderer, structlog.testing.capture_logs(), an
    embedding application's own) it is `logger.bind()`, structlog's own path, writing each line at once. Take
    one per batch: it reads the configuration, the context variables and the clock once."""
    config = structlog.get_config()
    processors = config["processors"]
    min_level = _LEVEL_OF_WRAPPER.get(config["wrapper_class"])
    standard = (
        config["logger_factory"] is _StdoutLogger
        and len(processors) in (4, 5)
        and processors[0] is structlog.contextvars.merge_contextvars
        and processors[1] is _add_level_and_timestamp
        and processors[2] is structlog.processors.format_exc_info
        and isinstance(processors[-1], _JSONLines)
        and (len(processors) == 4 or isinstance(processors[3], Redactor))
    )
    if not standard or min_level is None:
        yield logger.bind()
        return
    batch = _JobLines(min_level, processors[3] if len(processors) == 5 else None)
    try:
        yield batch
    finally:
        if batch.lines:
            _StdoutLogger.write_lines(batch.lines)


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
        structlog.dev.ConsoleRenderer() if use_console else _JSONLines(serializer=_dumps)
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
