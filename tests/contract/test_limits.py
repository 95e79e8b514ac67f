"""The store's half of the per-account limits, on every store: the operator's settings, the shared request
bucket taken in leases, and the daily count of destinations."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.store.base import Store
from switchboard.store.records import AccountLimits, Lease
from tests.clock import FakeClock
from tests.contract.conftest import Factory


async def test_limits_are_none_until_set_and_are_replaced_whole(store: Store, make: Factory) -> None:
    account = await make.account()
    other = await make.account()
    assert await store.get_limits(account.id) is None
    limits = AccountLimits(account.id, requests_per_second=2.5, burst=10, destinations_per_day=100, countries="US,CA")
    await store.set_limits(limits)
    assert await store.get_limits(account.id) == limits
    await store.set_limits(AccountLimits(account.id, destinations_per_day=5))
    assert await store.get_limits(account.id) == AccountLimits(account.id, destinations_per_day=5)
    await store.set_limits(AccountLimits(other.id, countries="GB"))
    assert await store.list_limits() == sorted(
        [AccountLimits(account.id, destinations_per_day=5), AccountLimits(other.id, countries="GB")],
        key=lambda x: x.account_id,
    )


async def test_a_rate_lease_takes_what_the_bucket_holds_and_it_refills_at_the_rate(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    now = clock.now_ms()
    lease = store.lease_rate
    assert await lease(account.id, want=4, rate=10, burst=10, now=now) == Lease(4, 6)
    assert await lease(account.id, want=4, rate=10, burst=10, now=now) == Lease(4, 2)
    assert await lease(account.id, want=4, rate=10, burst=10, now=now) == Lease(2, 0)
    assert await lease(account.id, want=4, rate=10, burst=10, now=now + 50) == Lease(0, 0.5)  # under one token
    assert await lease(account.id, want=4, rate=10, burst=10, now=now + 250) == Lease(2.5, 0)
    # A clock behind the last one refills nothing, and does not move the bucket's time back.
    assert await lease(account.id, want=4, rate=10, burst=10, now=now) == Lease(0, 0)
    assert await lease(account.id, want=4, rate=10, burst=10, now=now + 350) == Lease(1, 0)
    # Idle for long, it holds the burst at most.
    assert await lease(account.id, want=40, rate=10, burst=10, now=now + 60_000) == Lease(10, 0)
    other = await make.account()
    assert await lease(other.id, want=4, rate=10, burst=3, now=now) == Lease(3, 0)


async def test_rate_leases_taken_at_once_never_hand_out_a_token_twice(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    now = clock.now_ms()
    leases = await asyncio.gather(*(store.lease_rate(account.id, want=3, rate=1, burst=50, now=now) for _ in range(30)))
    assert sum(x.granted for x in leases) == 50
    assert min(x.left for x in leases) == 0


async def test_the_daily_count_never_passes_the_cap_and_starts_again_each_day(store: Store, make: Factory) -> None:
    account = await make.account()
    day = 20_300
    assert await store.daily_used(account.id, day=day) == 0
    assert await store.lease_daily(account.id, day=day, want=4, cap=10) == Lease(4, 4)
    assert await store.lease_daily(account.id, day=day, want=4, cap=10) == Lease(4, 8)
    assert await store.lease_daily(account.id, day=day, want=4, cap=10) == Lease(2, 10)
    assert await store.lease_daily(account.id, day=day, want=1, cap=10) == Lease(0, 10)
    assert await store.daily_used(account.id, day=day) == 10
    assert await store.lease_daily(account.id, day=day + 1, want=4, cap=10) == Lease(4, 4)
    assert await store.lease_daily(account.id, day=day, want=1, cap=12) == Lease(1, 11)  # the cap was raised
    assert await store.lease_daily(account.id, day=day, want=1, cap=5) == Lease(0, 11)  # and lowered


@pytest.mark.parametrize("want", [1, 7])
async def test_daily_leases_taken_at_once_count_exactly_the_cap(store: Store, make: Factory, want: int) -> None:
    account = await make.account()
    leases = await asyncio.gather(*(store.lease_daily(account.id, day=1, want=want, cap=50) for _ in range(20)))
    assert sum(x.granted for x in leases) == min(50, 20 * want)
    assert await store.daily_used(account.id, day=1) == min(50, 20 * want)
