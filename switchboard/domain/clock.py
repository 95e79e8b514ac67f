"""Time, injected everywhere so that tests can move it (STYLE.md: a fake clock for anything about time).

A `Clock` reads the time and also waits on it: the loops that poll, back off or pace (the SMS worker, the
callback dispatcher, the dialer, the simulators) sleep and time out through their clock, never through
`asyncio.sleep` or `asyncio.wait_for` directly, so that a test's fake clock (tests/clock.py) makes a minute
of their time pass at once instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time, milliseconds since the Unix epoch (UTC)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going backwards."""

    async def sleep(self, seconds: float) -> None:
        """Wait this long on this clock (0 or less: only let other tasks run, as `asyncio.sleep(0)`)."""

    async def wait_for(self, aw: Awaitable[T], seconds: float) -> T:
        """`aw`'s result, or TimeoutError (with `aw` cancelled) once `seconds` have passed on this clock; as
        `asyncio.wait_for`."""


class SystemClock:
    """The real time, and the event loop's sleeping and timeouts."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_for(self, aw: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(aw, seconds)


def format_time(ms: int | None) -> str:
    """The API's time format: UTC, `YYYY-MM-DD HH:MM:SS.fff`; empty when there is no time."""
    if ms is None:
        return ""
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}"
