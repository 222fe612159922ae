"""Sentry alerts: an event when a job fails permanently and when a task type fails N times in a row.

Nothing is sent unless `SENTRY_DSN` is set. A transient failure that will be retried sends nothing by itself.
Events are grouped by task type and error class (the fingerprint), carry job_id / attempt / task_type as tags,
never personal data (`send_default_pii=False`), and pass through the log redactor before they leave.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from worker.hooks import Hooks
from worker.queue import Finished
from worker.redaction import Redactor
from worker.settings import Settings

__all__ = ["Alerts", "error_class", "init_sentry"]

log = structlog.get_logger("worker.alerts")

_CLASS = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)(?::|$)")


def error_class(error: str | None) -> str:
    """The class of a recorded error text: `RuntimeError: boom` -> RuntimeError."""
    text = (error or "").strip()
    if text.startswith("timed out after"):
        return "TimeoutError"
    if text.startswith("invalid payload"):
        return "InvalidPayload"
    if text.startswith("lease expired"):
        return "LeaseExpired"
    if text.startswith("result is not JSON-serialisable"):
        return "InvalidResult"
    match = _CLASS.match(text)
    return match.group(1) if match else "JobError"


def _no_pii() -> dict[str, Any]:
    """No personal data. SDKs with `data_collection` (which deprecates `send_default_pii`) default to none;
    older 2.x SDKs are told `send_default_pii=False` explicitly."""
    if importlib.util.find_spec("sentry_sdk.data_collection") is not None:
        return {}
    return {"send_default_pii": False}


def init_sentry(settings: Settings) -> bool:
    """Initialise sentry-sdk when a DSN is configured. Returns whether events will be sent."""
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value():
        return False
    import sentry_sdk  # only with a DSN: the SDK and its transports cost start-up time and memory

    redactor = Redactor(settings.secret_values())

    def _before_send(event: Any, _hint: Any) -> Any:
        return redactor.redact(event)

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment,
        server_name=settings.worker_id,
        **_no_pii(),
        default_integrations=False,
        auto_enabling_integrations=False,
        attach_stacktrace=False,
        traces_sample_rate=None,
        before_send=_before_send,
    )
    log.info("sentry.enabled", environment=settings.sentry_environment)
    return True


class Alerts(Hooks):
    """Sends the events; counts consecutive failed attempts per task type (a success resets the count)."""

    def __init__(self, settings: Settings, *, enabled: bool | None = None) -> None:
        self.settings = settings
        self.enabled = init_sentry(settings) if enabled is None else enabled
        self.threshold = settings.sentry_consecutive_failures
        self.streaks: dict[str, int] = {}

    def jobs_finished(self, batch: Sequence[Finished]) -> None:
        """job_finished for each, in order, without a call per success while no failure streak is open."""
        streaks = self.streaks
        for f in batch:
            if f.outcome != "succeeded" or streaks:
                self.job_finished(f)

    def job_finished(self, finished: Finished) -> None:
        t = finished.task_type
        if finished.outcome == "succeeded":
            self.streaks.pop(t, None)
            return
        self.streaks[t] = self.streaks.get(t, 0) + 1
        streak = self.streaks[t]
        if finished.outcome == "failed":
            self._send(
                f"job failed permanently: {t}: {finished.error}", kind="failed_permanently", task_type=t,
                job_id=str(finished.job_id), attempt=finished.attempt, error=finished.error, streak=streak,
            )
        elif streak % self.threshold == 0:
            self._send(
                f"task type {t} failed {streak} times in a row: {finished.error}", kind="consecutive_failures",
                task_type=t, job_id=str(finished.job_id), attempt=finished.attempt, error=finished.error,
                streak=streak,
            )

    def lease_recovered(self, row: Mapping[str, Any]) -> None:
        if row.get("status") != "failed":
            return
        t = str(row.get("task_type", ""))
        self.streaks[t] = self.streaks.get(t, 0) + 1
        self._send(
            f"job failed permanently: {t}: lease expired (worker {row.get('locked_by')} stopped heartbeating)",
            kind="failed_permanently", task_type=t, job_id=str(row.get("id")), attempt=int(row.get("attempts", 0)),
            error="lease expired", streak=self.streaks[t],
        )

    def _send(
        self, message: str, *, kind: str, task_type: str, job_id: str, attempt: int, error: str | None, streak: int
    ) -> None:
        if not self.enabled:
            return
        import sentry_sdk  # loaded by init_sentry already when enabled

        cls = error_class(error)
        try:
            with sentry_sdk.new_scope() as scope:
                scope.fingerprint = [task_type, cls]
                scope.set_tag("task_type", task_type)
                scope.set_tag("job_id", job_id)
                scope.set_tag("attempt", str(attempt))
                scope.set_tag("error_class", cls)
                scope.set_tag("alert", kind)
                scope.set_extra("consecutive_failures", streak)
                scope.set_extra("error", error)
                event_id = sentry_sdk.capture_message(message, level="error")
        except Exception as exc:  # an alerting problem must never break job processing
            log.warning("sentry.send_failed", error=f"{type(exc).__name__}: {exc}")
            return
        log.info("sentry.event", alert=kind, task_type=task_type, job_id=job_id, event_id=event_id)

    def flush(self, timeout_s: float = 2.0) -> None:
        if self.enabled:
            import sentry_sdk

            sentry_sdk.flush(timeout=timeout_s)
