"""Per-account request rate: 429 with Retry-After when an account is over its rate (Send and Call together).

Two limiters answer the same question (`allow`):

- `RateLimiter`, a token bucket per account in this process: exact, and enough where there is one api
  process (the embedded SQLite store).
- `SharedRateLimiter`, for a cluster of api processes on PostgreSQL: the bucket is in the store
  (`Store.lease_rate`), and each process takes tokens from it in leases of `LEASE_SECONDS` of the account's
  rate and spends them locally, so most requests never touch the database. Tokens are never handed out twice,
  so together the processes accept at most the burst plus the rate over any time, plus what they hold in
  leases (at most one lease each, and a lease expires after `LEASE_TTL` seconds); under a load above the rate,
  no more than that under it (docs/api.md, "Limits").
"""

from __future__ import annotations

import asyncio
import logging

from switchboard.domain.clock import Clock
from switchboard.domain.rate import TokenBucket
from switchboard.errors import StoreError
from switchboard.limits import Effective, Limits
from switchboard.store.base import Store

log = logging.getLogger("switchboard.api")

_MAX_ACCOUNTS = 100_000
LEASE_SECONDS = 0.1
"""A lease is this many seconds of the account's rate (at least one token, at most its burst)."""
LEASE_TTL = 1.0
"""Seconds a process may spend a lease's tokens: unspent ones are dropped then (never over the rate)."""


class RateLimiter:
    """A bucket per account in this process: the account's rate and burst when `limits` is given, otherwise
    `rate` and `burst` for every account."""

    def __init__(self, *, rate: float, burst: int, clock: Clock, limits: Limits | None = None) -> None:
        self._default = Effective(rate, burst, None, None)
        self._clock = clock
        self._limits = limits
        self._buckets: dict[int, tuple[Effective, TokenBucket]] = {}

    async def allow(self, account_id: int) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        limits = self._default if self._limits is None else await self._limits.of(account_id)
        if limits.rate <= 0:
            return 0.0
        held = self._buckets.get(account_id)
        if held is None or held[0].rate != limits.rate or held[0].burst != limits.burst:
            if len(self._buckets) >= _MAX_ACCOUNTS:
                self._buckets.clear()
            bucket = TokenBucket(rate=limits.rate, burst=limits.burst, clock=self._clock)
            held = self._buckets[account_id] = (limits, bucket)
        return held[1].try_take()


class SharedRateLimiter:
    """The account's bucket in the store, shared by every process, taken in leases."""

    def __init__(self, *, store: Store, limits: Limits, clock: Clock) -> None:
        self._store = store
        self._limits = limits
        self._clock = clock
        self._held: dict[int, _Held] = {}

    async def allow(self, account_id: int) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        limits = await self._limits.of(account_id)
        if limits.rate <= 0:
            return 0.0
        held = self._held.get(account_id)
        if held is None:
            if len(self._held) >= _MAX_ACCOUNTS:
                self._held.clear()
            held = self._held[account_id] = _Held()
        now = self._clock.monotonic()
        if held.tokens >= 1 and now < held.expires:
            held.tokens -= 1
            return 0.0
        if now < held.empty_until:
            return held.empty_until - now
        if held.leasing is None:  # one lease on its way per account: the requests meanwhile wait for it
            held.leasing = asyncio.ensure_future(self._lease(account_id, held, limits))
        if not await asyncio.shield(held.leasing):
            return 0.0  # the store could not be asked: the request goes on (and its accept will tell)
        now = self._clock.monotonic()
        if held.tokens >= 1 and now < held.expires:
            held.tokens -= 1
            return 0.0
        return max(held.empty_until - now, 1 / limits.rate)

    async def _lease(self, account_id: int, held: _Held, limits: Effective) -> bool:
        want = min(max(1.0, limits.rate * LEASE_SECONDS), max(1.0, limits.burst))
        try:
            lease = await self._store.lease_rate(
                account_id, want=want, rate=limits.rate, burst=limits.burst, now=self._clock.now_ms()
            )
        except StoreError as e:
            log.warning("taking a lease of the request rate of account %d failed: %s", account_id, e)
            return False
        finally:
            held.leasing = None
        now = self._clock.monotonic()
        if lease.granted > 0:
            held.tokens = (held.tokens if now < held.expires else 0.0) + lease.granted
            held.expires = now + LEASE_TTL
        if lease.granted < want:
            # The bucket is empty: once this process has spent what it holds, it refuses until a whole lease
            # could have come in, and asks then. Asking for every token that comes in would cost a round trip
            # per request at the limit; the tokens that come in meanwhile stay in the bucket for that lease.
            held.empty_until = now + max(want - lease.left, 1.0) / limits.rate
        return True


class _Held:
    __slots__ = ("empty_until", "expires", "leasing", "tokens")

    def __init__(self) -> None:
        self.tokens = 0.0
        """Tokens of this process's lease not spent yet."""
        self.expires = 0.0
        self.empty_until = 0.0
        """The bucket was empty: requests are refused here until then without asking the store."""
        self.leasing: asyncio.Future[bool] | None = None
