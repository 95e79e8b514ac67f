"""`Store.cancel_message`, on every store: a scheduled send's destinations that no worker took are
Cancelled, with their callbacks; anything else is left alone."""

from __future__ import annotations

from typing import Any

import msgspec

from switchboard.domain.statuses import SmsStatus as S
from switchboard.store.base import Store
from switchboard.store.records import Account, Outcome
from tests.clock import FakeClock
from tests.contract.conftest import Backend, Factory

HOUR = 3_600_000


async def scheduled(make: Factory, account: Account, numbers: list[str], **kw: Any) -> int:
    """A Send scheduled an hour from now."""
    message, destinations, errors = make.message(account, numbers, delay=HOUR, **kw)
    message.status = S.SCHEDULED.value
    message.schedule_at = message.due_at
    return await make.store.accept(message, destinations, errors)


async def statuses(store: Store, account: Account, message_id: int) -> list[tuple[str, S]]:
    view = await store.get_message(account.id, message_id)
    assert view is not None
    return [(d.mobile_no, d.status) for d in view.destinations]


async def test_scheduled_destinations_are_cancelled_and_never_sent(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    message_id = await scheduled(make, account, ["+16175550100", "+16175550101", "bad"])
    result = await store.cancel_message(account.id, message_id, now=clock.advance(ms=10))
    assert result is not None
    assert result.cancelled == 2
    assert result.destinations == [
        ("+16175550100", S.CANCELLED),
        ("+16175550101", S.CANCELLED),
        ("bad", S.FAILED),
    ]
    assert await statuses(store, account, message_id) == result.destinations
    assert await store.claim(now=clock.advance(ms=2 * HOUR), limit=10, lease_ms=30_000) == []
    view = await store.get_message(account.id, message_id)
    assert view is not None
    assert [h.status for h in await store.history(view.destinations[0].id)] == ["Cancelled"]


async def test_each_cancelled_destination_gets_its_callback_after_any_earlier_one(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    account = await make.account()
    message_id = await scheduled(
        make, account, ["+16175550100", "bad"], callback="url", callback_url="https://hooks.example/x"
    )
    assert await backend.count("callbacks") == 1  # the invalid number's Failed, at accept
    await store.cancel_message(account.id, message_id, now=clock.advance(ms=10))
    bodies = [msgspec.json.decode(c.body) for c in await store.list_callbacks(account.id, state=None, limit=10)]
    assert [(b["MobileNo"], b["Status"], b["Sequence"]) for b in bodies] == [
        ("+16175550100", "Cancelled", 1),
        ("bad", "Failed", 1),
    ]


async def test_one_number_is_cancelled_alone_as_written_or_in_e164(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    message_id = await scheduled(make, account, ["+16175550100", "+16175550101"])
    result = await store.cancel_message(account.id, message_id, mobile_no="+16175550101", now=clock.now_ms())
    assert result is not None
    assert (result.cancelled, result.destinations) == (1, [("+16175550101", S.CANCELLED)])
    assert await statuses(store, account, message_id) == [("+16175550100", S.SCHEDULED), ("+16175550101", S.CANCELLED)]
    again = await store.cancel_message(account.id, message_id, mobile_no="+16175550101", now=clock.now_ms())
    assert again is not None and again.cancelled == 0
    nobody = await store.cancel_message(account.id, message_id, mobile_no="+19995550000", now=clock.now_ms())
    assert nobody is not None and (nobody.cancelled, nobody.destinations) == (0, [])


async def test_a_destination_a_worker_took_is_left_to_the_worker(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    message_id = await scheduled(make, account, ["+16175550100", "+16175550101"])
    [taken, _] = await store.claim(now=clock.advance(ms=HOUR), limit=1, lease_ms=30_000) + [None]
    assert taken is not None
    result = await store.cancel_message(account.id, message_id, now=clock.advance(ms=1))
    assert result is not None
    assert result.cancelled == 1
    assert dict(result.destinations) == {taken.mobile_no: S.SCHEDULED, "+16175550101": S.CANCELLED}
    await store.finish([Outcome(taken.id, taken.attempt, S.SENT, carrier="sim", carrier_ref="r1")], now=clock.now_ms())
    assert dict(await statuses(store, account, message_id))[taken.mobile_no] is S.SENT


async def test_a_send_already_under_way_changes_nothing(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    sent = await make.sent(account)
    queued = await make.send(account, ["+16175550102"])
    for message_id, status in ((sent.message_id, S.SENT), (queued, S.RECEIVED)):
        result = await store.cancel_message(account.id, message_id, now=clock.now_ms())
        assert result is not None
        assert result.cancelled == 0
        assert [s for _, s in result.destinations] == [status]


async def test_another_accounts_message_is_not_found(store: Store, make: Factory, clock: FakeClock) -> None:
    owner, other = await make.account(), await make.account()
    message_id = await scheduled(make, owner, ["+16175550100"])
    assert await store.cancel_message(other.id, message_id, now=clock.now_ms()) is None
    assert await store.cancel_message(owner.id, message_id + 10_000, now=clock.now_ms()) is None
    assert await statuses(store, owner, message_id) == [("+16175550100", S.SCHEDULED)]
