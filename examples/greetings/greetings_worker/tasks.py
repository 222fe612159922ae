"""The `greetings.send` task: a payload model, its own settings (environment variables GREETINGS_*), a policy
and an hourly schedule, declared together. Installed next to `worker`, `worker run` runs it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import PermanentJobError
from worker.tasks import Task, TaskContext


class Greeting(BaseModel):
    """The job's payload: checked when the job is enqueued and again before the handler runs."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="world", min_length=1, max_length=100)


class GreetingSettings(BaseSettings):
    """The task's own settings, loaded and validated when the worker starts (a bad value: exit 2)."""

    model_config = SettingsConfigDict(env_prefix="GREETINGS_")

    salutation: str = Field(default="Hello", min_length=1, max_length=40)


async def send(payload: Greeting, ctx: TaskContext) -> dict[str, Any]:
    """Greets someone. Idempotent: running it twice for one job gives the same result."""
    if payload.name.lower() == "nobody":
        raise PermanentJobError("cannot greet nobody")  # retrying would not help: fail for good
    salutation = ctx.config(GreetingSettings).salutation
    return {"greeting": f"{salutation}, {payload.name}!"}


def tasks() -> list[Task[Any]]:
    """What the `worker.tasks` entry point returns."""
    return [
        Task(
            "greetings.send", send, Greeting, description="Greets someone.",
            timeout_s=30, max_attempts=4, priority=10, backoff_base_s=5, backoff_max_s=60,
            schedules=("0 * * * *",), settings_model=GreetingSettings,
        )
    ]
