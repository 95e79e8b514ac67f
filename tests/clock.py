"""The tests' one fake clock (STYLE.md: trio's fake clock that jumps time), for unit and contract tests alike."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

START_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z, where a FakeClock starts unless told otherwise."""
SETTLE_TURNS = 20
"""Turns of the event loop that `run` and `run_until` give what is ready (woken sleepers, results the loop
already has) before they look again: enough for a few hand-offs between tasks."""


class FakeClock:
    """A `Clock` (switchboard/domain/clock.py) whose time moves only when a test moves it, and whose sleepers
    wake when it does; nothing else moves it, so a sleeper never wakes by itself.

    - `now_ms()` starts at `start_ms`, `monotonic()` at 0; both move together, kept in whole microseconds so
      that steps of seconds and of milliseconds add up exactly.
    - `sleep(s)` parks the caller until the clock reaches now + s; `wait_for(aw, s)` races `aw` against such a
      sleep (TimeoutError, `aw` cancelled, if the sleep ends first). `sleep(0)` only yields, as asyncio's.
    - `call_later(s, callback)` makes it the SIP transactions' `Scheduler` too: the callback runs when the
      clock reaches now + s, from inside the call that moved it, with the clock reading that very time.
    - `advance(seconds=s)` (or `advance(ms=n)`) moves time forward at once and wakes every sleeper then due, earliest
      deadline first, ties in the order they went to sleep; they run when the caller next yields to the loop
      (timers' callbacks at once, each at its time, so those they set within the step run in it too).
      It jumps: a loop that sleeps 1 s wakes once in `advance(seconds=10)`, and counts its next second from there.
    - `run(s)` lets `s` seconds pass as they would, and `run_until(condition)` lets time pass until the
      condition holds: both move time from deadline to deadline (trio's autojump), each time waking the
      sleepers due and letting the loop run what they start, so that every deadline on the way is met.

    Trio jumps when every task waits for its clock. An asyncio loop cannot say so, and work outside the loop
    (the SQLite store's threads) is invisible to it; a test makes such work visible with `held(store, clock)`
    (or `hold()`), and `run`/`run_until` move time only when nothing is held and the loop has had
    SETTLE_TURNS turns. Without that, time would run ahead while a poll loop waits for the store (a claim
    taken at 0 s, written at 12 s, has lost its lease). Deterministic: the time depends only on the calls made
    to the clock, sleepers wake in a fixed order, and time never moves while held work is in progress.
    """

    def __init__(self, start_ms: int = START_MS) -> None:
        self._start_us = start_ms * 1000
        self._us = 0
        self._sleepers: list[tuple[int, int, asyncio.Future[None] | _Timer]] = []  # (deadline, order, _): a heap
        self._order = 0
        self._holds = 0
        self._released = asyncio.Event()
        self._released.set()

    def now_ms(self) -> int:
        return (self._start_us + self._us) // 1000

    def monotonic(self) -> float:
        return self._us / 1_000_000

    @property
    def sleeping(self) -> int:
        """How many sleepers wait for the clock."""
        return sum(not f.done() for _, _, f in self._sleepers)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._order += 1
        heapq.heappush(self._sleepers, (self._us + _us(seconds), self._order, future))
        await future  # a cancelled sleeper stays in the heap, done, and is skipped

    def call_later(self, delay: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(callback)
        self._order += 1
        heapq.heappush(self._sleepers, (self._us + _us(delay), self._order, timer))
        return timer

    async def wait_for(self, aw: Awaitable[T], seconds: float) -> T:
        task = asyncio.ensure_future(aw)
        timer = asyncio.ensure_future(self.sleep(seconds))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            timed_out = not task.done()  # (or the caller was cancelled: that goes on up)
            if timed_out:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if timed_out:
            raise TimeoutError
        return task.result()

    def advance(self, *, seconds: float = 0.0, ms: int = 0) -> int:
        """Move time forward by `seconds` plus `ms` milliseconds and wake the sleepers due; the new `now_ms()`
        (for `now=clock.advance(ms=10)`). The unit is always named: a bare number could be either."""
        step = _us(seconds) + ms * 1000
        if step < 0:
            raise ValueError("a clock does not go back")
        self._move_to(self._us + step)
        return self.now_ms()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """While open, `run` and `run_until` do not move time: work the code under test waits for (I/O, a
        thread) is in progress."""
        self._holds += 1
        self._released.clear()
        try:
            yield
        finally:
            self._holds -= 1
            if not self._holds:
                self._released.set()

    async def run(self, seconds: float, *, real: float = 10.0) -> None:
        """Let `seconds` pass deadline by deadline (each one's sleepers woken, the loop given its turns, held
        work waited for), and stop at now + `seconds`."""
        end = self._us + _us(seconds)
        async with asyncio.timeout(real):
            while True:
                await self._settle()
                deadline = self._next_deadline()
                if deadline is None or deadline > end:
                    break
                self._move_to(deadline)
            self._move_to(end)
            await self._settle()

    async def run_until(
        self, condition: Callable[[], bool | Awaitable[bool]], *, within: float = 60.0, real: float = 10.0
    ) -> None:
        """Let time pass deadline by deadline until `condition` (checked before each move) holds. Fails when it
        still does not after `within` seconds of this clock, or after `real` seconds of real time (a hang, or
        a condition that needs no time but work nobody holds)."""
        limit = self._us + _us(within)
        async with asyncio.timeout(real):
            while True:
                await self._settle()
                holds = condition()
                if inspect.isawaitable(holds):
                    holds = await holds
                if holds:
                    return
                deadline = self._next_deadline()
                if deadline is not None and deadline <= limit:
                    self._move_to(deadline)
                elif deadline is not None or self._us >= limit:
                    raise AssertionError(f"still not so after {within} s of fake time")

    async def _settle(self) -> None:
        """Until nothing is held and the loop has had its turns."""
        while True:
            await self._released.wait()
            for _ in range(SETTLE_TURNS):
                await asyncio.sleep(0)
            if not self._holds:
                return

    def _move_to(self, us: int) -> None:
        """Move to `us`, waking what is due on the way: each timer's callback runs with the clock at its time."""
        while self._sleepers and self._sleepers[0][0] <= us:
            deadline, _, waker = heapq.heappop(self._sleepers)
            if waker.done():
                continue
            self._us = max(self._us, deadline)
            if isinstance(waker, _Timer):
                waker.fire()
            else:
                waker.set_result(None)
        self._us = max(self._us, us)

    def _next_deadline(self) -> int | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None


class _Timer:
    """A timer of `FakeClock.call_later` (a TimerHandle)."""

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback: Callable[[], object] | None = callback

    def cancel(self) -> None:
        self._callback = None

    def done(self) -> bool:
        return self._callback is None

    def fire(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


def held(target: T, clock: FakeClock) -> T:
    """`target` (a store, say) with each of its coroutine methods run under `clock.hold()`: the fake clock does
    not move while the code under test waits for it."""
    return _Held(target, clock)  # type: ignore[return-value]


class _Held:
    def __init__(self, target: Any, clock: FakeClock) -> None:
        self._target = target
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def in_hold(*args: Any, **kwargs: Any) -> Any:
            async with self._clock.hold():
                return await attr(*args, **kwargs)

        return in_hold


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)
