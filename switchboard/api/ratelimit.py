"""Per-account request rate: a token bucket in this process (429 with Retry-After when empty)."""

from __future__ import annotations

from switchboard.domain.clock import Clock


class RateLimiter:
    def __init__(self, *, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}

    def allow(self, account_id: int) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        if self._rate <= 0:
            return 0.0
        now = self._clock.monotonic()
        tokens, last = self._buckets.get(account_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[account_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[account_id] = (tokens, now)
        return (1.0 - tokens) / self._rate
