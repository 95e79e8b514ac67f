"""Per-account limits over an in-memory store that answers leases as the SQL does (tests/contract/test_limits.py
proves the SQL): the shared request rate of several processes, the daily cap, the countries allowed."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from switchboard.api.ratelimit import LEASE_SECONDS, LEASE_TTL, RateLimiter, SharedRateLimiter
from switchboard.domain.catalogue import DestinationError
from switchboard.domain.ids import IdGenerator
from switchboard.domain.sms_request import SendRequest, validate_send
from switchboard.errors import AccountError
from switchboard.limits import Limits, daily_lease, parse_countries
from switchboard.sms.service import INVALID_NUMBER, SmsService
from switchboard.store.records import Account, AccountLimits, Lease, NewDestination, NewErrorLog, NewMessage
from tests.clock import FakeClock

ACCOUNT = Account(1, "acme", None, None, "whsec", 0)


class LimitsStore:
    """The limits half of the store, in memory; counts the leases asked for."""

    def __init__(self) -> None:
        self.limits: dict[int, AccountLimits] = {}
        self.buckets: dict[int, tuple[float, int]] = {}
        self.daily: dict[tuple[int, int], int] = {}
        self.leases = 0
        self.accepted: list[tuple[NewMessage, list[NewDestination], list[NewErrorLog]]] = []

    async def get_limits(self, account_id: int) -> AccountLimits | None:
        return self.limits.get(account_id)

    async def lease_rate(self, account_id: int, *, want: float, rate: float, burst: float, now: int) -> Lease:
        self.leases += 1
        await asyncio.sleep(0)  # a round trip: others run meanwhile
        tokens, at = self.buckets.get(account_id, (burst, now))
        tokens = min(burst, tokens + max(0, now - at) * rate / 1000)
        grant = want if tokens >= want else tokens if tokens >= 1 else 0.0
        self.buckets[account_id] = (tokens - grant, max(at, now))
        return Lease(grant, tokens - grant)

    async def lease_daily(self, account_id: int, *, day: int, want: int, cap: int) -> Lease:
        self.leases += 1
        await asyncio.sleep(0)
        used = self.daily.get((account_id, day), 0)
        grant = max(0, min(want, cap - used))
        self.daily[account_id, day] = used + grant
        return Lease(grant, used + grant)

    async def accept(self, message: NewMessage, destinations: list[NewDestination], errors: list[NewErrorLog]) -> int:
        self.accepted.append((message, destinations, errors))
        return message.id


def limits(store: LimitsStore, clock: FakeClock, rate: float = 100, burst: float = 10) -> Limits:
    return Limits(store=store, clock=clock, rate=rate, burst=burst)  # type: ignore[arg-type]


async def offer(limiters: list[Any], clock: FakeClock, *, per_second: int, seconds: float) -> list[int]:
    """`per_second` requests a second to each limiter for `seconds`, in an order drawn afresh each time (as
    requests come to processes in no fixed order); how many each let through."""
    accepted = [0] * len(limiters)
    step_ms = 1000 // per_second
    draw = random.Random(13)
    order = list(range(len(limiters)))
    for _ in range(int(seconds * per_second)):
        draw.shuffle(order)
        results = await asyncio.gather(*(limiters[i].allow(ACCOUNT.id) for i in order))
        for i, wait in zip(order, results, strict=True):
            accepted[i] += wait == 0
        clock.advance(ms=step_ms)
    return accepted


@pytest.mark.parametrize("processes", [1, 2, 4])
async def test_processes_sharing_the_bucket_accept_the_rate_within_one_lease_each(processes: int) -> None:
    clock, store = FakeClock(), LimitsStore()
    rate, burst, seconds = 100.0, 10.0, 10.0
    shared = [SharedRateLimiter(store=store, limits=limits(store, clock, rate, burst), clock=clock)]  # type: ignore[arg-type]
    shared += [
        SharedRateLimiter(store=store, limits=limits(store, clock, rate, burst), clock=clock)  # type: ignore[arg-type]
        for _ in range(processes - 1)
    ]
    accepted = await offer(shared, clock, per_second=500, seconds=seconds)  # 5x the rate, to each process
    lease = rate * LEASE_SECONDS
    assert all(a > 0 for a in accepted), accepted
    assert sum(accepted) <= burst + rate * seconds + processes * lease
    assert sum(accepted) >= rate * seconds - processes * lease
    # Most requests never asked the store: a lease per process every LEASE_SECONDS, and one probe of an empty
    # bucket between, at most.
    assert store.leases <= processes * 2 * seconds / LEASE_SECONDS + processes


async def test_an_empty_shared_bucket_refuses_with_the_wait_and_without_asking_again() -> None:
    clock, store = FakeClock(), LimitsStore()
    limiter = SharedRateLimiter(store=store, limits=limits(store, clock, rate=10, burst=1), clock=clock)  # type: ignore[arg-type]
    assert await limiter.allow(ACCOUNT.id) == 0
    wait = await limiter.allow(ACCOUNT.id)
    assert 0 < wait <= 1.0
    asked = store.leases
    assert await limiter.allow(ACCOUNT.id) > 0
    assert store.leases == asked
    clock.advance(seconds=wait)
    assert await limiter.allow(ACCOUNT.id) == 0


async def test_requests_that_arrive_during_a_lease_share_it() -> None:
    clock, store = FakeClock(), LimitsStore()
    limiter = SharedRateLimiter(store=store, limits=limits(store, clock, rate=50, burst=50), clock=clock)  # type: ignore[arg-type]
    waits = await asyncio.gather(*(limiter.allow(ACCOUNT.id) for _ in range(8)))
    assert waits.count(0) == 5  # one lease of 0.1 s of 50/s
    assert store.leases == 1


async def test_unspent_tokens_of_a_lease_expire() -> None:
    clock, store = FakeClock(), LimitsStore()
    limiter = SharedRateLimiter(store=store, limits=limits(store, clock, rate=100, burst=10), clock=clock)  # type: ignore[arg-type]
    assert await limiter.allow(ACCOUNT.id) == 0  # a lease of 10, 9 left here
    clock.advance(seconds=LEASE_TTL)
    assert await limiter.allow(ACCOUNT.id) == 0
    assert store.leases == 2


async def test_an_account_with_its_own_rate_gets_it_in_process_and_shared() -> None:
    clock, store = FakeClock(), LimitsStore()
    store.limits[ACCOUNT.id] = AccountLimits(ACCOUNT.id, requests_per_second=0.5, burst=2)
    other = ACCOUNT.id + 1
    for limiter in (
        RateLimiter(rate=1000, burst=1000, clock=clock, limits=limits(store, clock, 1000, 1000)),
        SharedRateLimiter(store=store, limits=limits(store, clock, 1000, 1000), clock=clock),  # type: ignore[arg-type]
    ):
        assert [await limiter.allow(ACCOUNT.id) == 0 for _ in range(3)] == [True, True, False]
        assert all([await limiter.allow(other) == 0 for _ in range(50)])
        clock.advance(seconds=2)
        assert await limiter.allow(ACCOUNT.id) == 0
        store.buckets.clear()


async def test_a_rate_of_zero_is_no_limit() -> None:
    clock, store = FakeClock(), LimitsStore()
    store.limits[ACCOUNT.id] = AccountLimits(ACCOUNT.id, requests_per_second=0)
    limiter = SharedRateLimiter(store=store, limits=limits(store, clock), clock=clock)  # type: ignore[arg-type]
    assert all([await limiter.allow(ACCOUNT.id) == 0 for _ in range(100)])
    assert store.leases == 0


async def test_the_daily_count_of_two_processes_never_passes_the_cap() -> None:
    clock, store = FakeClock(), LimitsStore()
    cap = 1000
    first, second = limits(store, clock), limits(store, clock)
    counted = 0
    for i in range(600):
        counted += await (first if i % 2 else second).count_daily(ACCOUNT.id, 3, cap)
    assert cap - 2 * daily_lease(cap) <= counted <= cap
    assert store.daily[ACCOUNT.id, clock.now_ms() // 86_400_000] == cap
    asked = store.leases
    assert await first.count_daily(ACCOUNT.id, 1, cap) == 0  # the cap was reached: the store is not asked
    assert store.leases == asked
    assert await first.count_daily(ACCOUNT.id, 1, cap + 1) == 1  # a new cap is
    clock.advance(seconds=86_400)
    assert await first.count_daily(ACCOUNT.id, 5, cap) == 5  # a new day


def test_countries_are_two_letter_codes() -> None:
    assert parse_countries("us, ca,US") == "CA,US"
    assert parse_countries("") is None
    assert parse_countries("all") is None
    with pytest.raises(AccountError):
        parse_countries("USA")


def request(numbers: list[str]) -> SendRequest:
    r = validate_send({"Destination": numbers, "Message": "hi", "Sender": "OM"}, now=datetime.now(UTC))
    assert isinstance(r, SendRequest)
    return r


async def service(store: LimitsStore, clock: FakeClock) -> SmsService:
    ids = IdGenerator(node=1, clock_ms=clock.now_ms)
    return SmsService(store=store, ids=ids, clock=clock, limits=limits(store, clock))  # type: ignore[arg-type]


async def test_destinations_in_countries_not_allowed_and_past_the_daily_cap_fail_each_with_its_error() -> None:
    clock, store = FakeClock(), LimitsStore()
    store.limits[ACCOUNT.id] = AccountLimits(ACCOUNT.id, destinations_per_day=2, countries="US")
    sms = await service(store, clock)
    numbers = ["+16175551212", "+33612345678", "nope", "+16175551213", "+16175551214", "+80012345678"]
    accepted = await sms.send(ACCOUNT, request(numbers))
    message, _, errors = store.accepted[-1]
    assert message.id == accepted.message_id
    by_position = {e.destination_id - message.id - 1: e for e in errors}
    assert {p: e.text for p, e in by_position.items()} == {
        1: DestinationError.COUNTRY_NOT_ALLOWED.text,
        2: INVALID_NUMBER,
        4: DestinationError.DAILY_LIMIT.text,
        5: DestinationError.COUNTRY_NOT_ALLOWED.text,
    }
    assert by_position[4].code == "daily_limit"
    assert [e.destination_id for e in errors] == sorted(e.destination_id for e in errors)


async def test_an_account_without_limits_of_its_own_is_not_checked() -> None:
    clock, store = FakeClock(), LimitsStore()
    sms = await service(store, clock)
    await sms.send(ACCOUNT, request(["+16175551212", "+33612345678"]))
    assert store.accepted[-1][2] == []
    assert store.leases == 0
