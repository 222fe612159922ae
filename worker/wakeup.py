"""A resettable wake-up flag for the daemon's loops (anyio events are one-shot)."""

from __future__ import annotations

import anyio

__all__ = ["Wakeup"]


class Wakeup:
    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait_or(self, other: anyio.Event | None, timeout: float | None = None) -> bool:
        """Wait until set, `other` is set, or the timeout passes. True when this flag was set."""
        event = self._event
        if event.is_set() or (other is not None and other.is_set()):
            return event.is_set()
        with anyio.move_on_after(timeout):
            if other is None:
                await event.wait()
            else:
                async with anyio.create_task_group() as tg:

                    async def _wait(ev: anyio.Event) -> None:
                        await ev.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(_wait, event)
                    tg.start_soon(_wait, other)
        return event.is_set()
