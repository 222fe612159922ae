"""An asyncio event loop on virtual time, for tests of timers (deadlines, timeouts) that must not depend on how
promptly the machine schedules them.

The loop is a real SelectorEventLoop (callbacks, tasks, cancellation and `call_at` ordering are asyncio's own);
only its clock is virtual. When the loop has nothing ready to run and would block until its next timer, the
clock jumps to that timer instead of sleeping, so `await asyncio.sleep(30)` returns at once with `loop.time()`
exactly 30 s later, and a timer due at t fires before anything due after t, however loaded the machine is.
File descriptors that are ready are still served first; a loop with no timer and nothing ready blocks as usual
(a test that waits for nothing is stopped by pytest-timeout).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualTimeLoop", "run_in_virtual_time"]

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, advance: Callable[[float], None]) -> None:
        super().__init__()
        self._advance = advance

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout is None:
            return ready or super().select(timeout)
        if timeout > 0:
            self._advance(timeout)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_JumpingSelector(self._advance))

    def _advance(self, seconds: float) -> None:
        self._now += seconds

    def time(self) -> float:
        return self._now


def run_in_virtual_time(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` to completion on a fresh VirtualTimeLoop (its clock starts at 0)."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())
