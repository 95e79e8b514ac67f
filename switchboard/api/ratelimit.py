"""Per-account request rate in this process: 429 with Retry-After when an account's bucket is empty."""

from __future__ import annotations

from switchboard.domain.clock import Clock
from switchboard.domain.rate import TokenBucket

_MAX_ACCOUNTS = 100_000


class RateLimiter:
    def __init__(self, *, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[int, TokenBucket] = {}

    def allow(self, account_id: int) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        if self._rate <= 0:
            return 0.0
        bucket = self._buckets.get(account_id)
        if bucket is None:
            if len(self._buckets) >= _MAX_ACCOUNTS:
                self._buckets.clear()
            bucket = self._buckets[account_id] = TokenBucket(rate=self._rate, burst=self._burst, clock=self._clock)
        return bucket.try_take()
