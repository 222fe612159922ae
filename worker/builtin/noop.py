"""`noop`, the canary and benchmark job: it can sleep and can be told to fail, which makes it useful for checking
a deployment end to end.
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from worker.errors import PermanentJobError
from worker.tasks import Task, TaskContext

__all__ = ["NoopPayload", "noop", "noop_task"]


class NoopPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sleep_s: float = Field(default=0.0, ge=0, le=3600, description="Sleep this long before finishing.")
    fail: str | None = Field(default=None, max_length=1000, description="Raise this error message.")
    permanent: bool = Field(default=False, description="With fail: fail without retrying.")


async def noop(payload: NoopPayload, ctx: TaskContext) -> dict[str, Any] | None:
    """Does nothing (optionally sleeps or fails): a canary and a benchmark job."""
    if payload.sleep_s:
        await anyio.sleep(payload.sleep_s)
    if payload.fail is not None:
        if payload.permanent:
            raise PermanentJobError(payload.fail)
        raise RuntimeError(payload.fail)
    return None


def noop_task() -> Task[NoopPayload]:
    return Task("noop", noop, NoopPayload, description="Does nothing: a canary and a benchmark job.")
