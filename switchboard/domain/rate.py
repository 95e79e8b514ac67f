"""A token bucket: the one rate limiter, for accounts' requests and carriers' submits alike."""

from __future__ import annotations

from switchboard.domain.clock import Clock


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up. A rate of 0 or less means no limit."""

    def __init__(self, *, rate: float, burst: float, clock: Clock) -> None:
        self._rate = rate
        self._burst = max(burst, 1.0)
        self._clock = clock
        self._tokens = self._burst
        self._last = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now

    def try_take(self, n: float = 1.0) -> float:
        """Take `n` tokens if there are; 0 when taken, else the seconds until they would be there."""
        if self._rate <= 0:
            return 0.0
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return 0.0
        return (n - self._tokens) / self._rate

    def take(self, n: float) -> float:
        """Take `n` tokens now, going into debt if need be; the seconds the caller should wait before
        using them (0 when they were there)."""
        if self._rate <= 0:
            return 0.0
        self._refill()
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate
