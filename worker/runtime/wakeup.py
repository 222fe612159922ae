"""A resettable wake-up flag for the daemon's loops (anyio events are one-shot).

Cheap on purpose: the fetch loop waits on one of these for every claim cycle, so a wait is a plain asyncio
event wait under `asyncio.timeout`, with no task spawned. Stopping the daemon sets every flag its loops wait
on, so no wait needs to watch a second event.
"""

from __future__ import annotations

import asyncio

__all__ = ["Wakeup"]


class Wakeup:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or until the timeout passes. True when set."""
        if self._event.is_set():
            return True
        if timeout is None:
            await self._event.wait()
            return True
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await self._event.wait()
        except TimeoutError:
            return False
        return True
