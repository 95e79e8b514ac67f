"""Per-account limits: what applies to each account, and the daily count of destinations every process shares.

The request rate and burst default to `[limits]`; the operator may set, per account, another rate and burst,
a cap on destinations per UTC day, and the countries a destination may be in (`switchboard accounts limits`,
stored in `account_limits`). Each process reads an account's limits once per `CACHE_SECONDS` (the Send path
cannot afford a database read per request), so a change takes effect everywhere within that time.

The daily count lives in the store (`Store.lease_daily`), shared by every api process. A process counts
destinations against it in leases of `daily_lease(cap)` and spends them locally, so most Sends never ask the
store: the count never passes the cap, and the cap is reached early by at most one unspent lease per process
(docs/api.md, "Limits").
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from switchboard.domain.clock import Clock
from switchboard.errors import AccountError
from switchboard.store.base import Store
from switchboard.store.records import AccountLimits

CACHE_SECONDS = 10.0
_CACHE_MAX = 100_000
DAY_MS = 86_400_000
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True, slots=True)
class Effective:
    """The limits that apply to one account now."""

    rate: float
    """Requests a second, Send and Call together; 0 or less: no limit."""
    burst: float
    daily: int | None
    """Destinations a UTC day (SMS Send); None: no cap."""
    countries: frozenset[str] | None
    """The ISO 3166 alpha-2 codes a destination may be in; None: every country."""


def parse_countries(text: str) -> str | None:
    """"us, ca" as stored ("CA,US"); "" or "all" for every country (None). Refuses what is not two letters."""
    codes = {c.strip().upper() for c in text.split(",") if c.strip()}
    if not codes or codes == {"ALL"}:
        return None
    bad = sorted(c for c in codes if not _COUNTRY.fullmatch(c))
    if bad:
        raise AccountError(f"countries are ISO 3166 alpha-2 codes such as US or CA, not {', '.join(bad)}")
    return ",".join(sorted(codes))


def daily_lease(cap: int) -> int:
    """Destinations a process counts against a daily cap at once: 1 % of it, from 1 to 1,000."""
    return max(1, min(1000, cap // 100))


class Limits:
    def __init__(self, *, store: Store, clock: Clock, rate: float, burst: float) -> None:
        self._store = store
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._cache: dict[int, tuple[float, Effective]] = {}
        self._default = Effective(rate, burst, None, None)
        self._daily: dict[int, _Daily] = {}

    async def of(self, account_id: int) -> Effective:
        """The account's limits, read from the store at most once per CACHE_SECONDS."""
        now = self._clock.monotonic()
        hit = self._cache.get(account_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self._store.get_limits(account_id)
        effective = self._default if found is None else self.effective(found)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[account_id] = (now + CACHE_SECONDS, effective)
        return effective

    def effective(self, limits: AccountLimits) -> Effective:
        return Effective(
            rate=self._rate if limits.requests_per_second is None else limits.requests_per_second,
            burst=self._burst if limits.burst is None else limits.burst,
            daily=limits.destinations_per_day,
            countries=None if limits.countries is None else frozenset(limits.countries.split(",")),
        )

    def today(self) -> int:
        return self._clock.now_ms() // DAY_MS

    async def count_daily(self, account_id: int, want: int, cap: int) -> int:
        """Count up to `want` destinations against the account's cap today; how many were counted (the first
        that many of the request's go ahead, the rest are over the cap)."""
        day = self.today()
        state = self._daily.get(account_id)
        if state is None or state.day != day:
            if len(self._daily) >= _CACHE_MAX:
                self._daily.clear()
            state = self._daily[account_id] = _Daily(day)
        if state.held < want and state.full != cap:
            async with state.lock:  # one lease at a time per account: what arrives meanwhile spends it
                if state.held < want and state.full != cap:
                    asked = max(want - state.held, daily_lease(cap))
                    lease = await self._store.lease_daily(account_id, day=day, want=asked, cap=cap)
                    state.held += int(lease.granted)
                    if lease.granted < asked:  # the cap is reached: ask no more today, unless it changes
                        state.full = cap
        taken = min(want, state.held)
        state.held -= taken
        return taken


class _Daily:
    __slots__ = ("day", "full", "held", "lock")

    def __init__(self, day: int) -> None:
        self.day = day
        self.held = 0
        """Destinations this process counted against today's cap and has not spent."""
        self.full: int | None = None
        """The cap that today's count reached; the store is not asked again while the cap stays the same."""
        self.lock = asyncio.Lock()
