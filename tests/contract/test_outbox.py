"""The callback outbox contract: events written with the status change that caused them, claimed in
order per destination, retried, given up and replayed. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import msgspec

from switchboard.domain.statuses import SmsStatus
from switchboard.store.base import Store
from switchboard.store.records import CallbackResult, CallbackState, ClaimedCallback, Outcome, Receipt
from tests.clock import FakeClock
from tests.contract.conftest import INVALID_NUMBER, Factory

LEASE = 30_000


async def claim(store: Store, now: int, limit: int = 100) -> list[ClaimedCallback]:
    return await store.claim_callbacks(now=now, limit=limit, lease_ms=LEASE)


def result(
    c: ClaimedCallback, state: CallbackState, at: int, *, status: int | None = 200, retry_at: int | None = None,
    disable: str | None = None,
) -> CallbackResult:  # fmt: skip
    return CallbackResult(
        c.id, c.attempt, state, at, c.url, status, 12, None if status == 200 else f"HTTP {status}",
        retry_at=retry_at, disable=disable, account_id=c.account_id, kind=c.kind,
    )  # fmt: skip


async def test_a_change_writes_its_callback_with_the_contract_body(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    sent = await make.sent(account, callback="yes", reference_id="ref-1")
    [c] = await claim(store, clock.now_ms())
    assert (c.subject_id, c.sequence, c.kind, c.url, c.from_account) == (sent.destination_id, 1, "sms", None, True)
    assert c.secret == account.webhook_secret
    body = msgspec.json.decode(c.body)
    assert body["ID"] == str(sent.message_id)
    assert body["MobileNo"] == "+16175550100"
    assert body["Status"] == "Sent"
    assert body["ReferenceID"] == "ref-1"
    assert (body["Error"], body["ErrorLogsID"], body["Sequence"], body["Segments"]) == ("", "", 1, 1)
    assert len(body["DateTime"]) == len("2017-07-16 12:08:56.690")


async def test_no_callback_is_written_when_the_request_asked_for_none(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    await make.sent(await make.account(), callback="no")
    assert await claim(store, clock.now_ms()) == []
    assert await store.pending_callbacks() == 0


async def test_an_invalid_number_has_its_failed_callback_at_once(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    await make.send(account, ["0049", "+16175550100"], callback="url", callback_url="https://hooks.example/x")
    [c] = await claim(store, clock.now_ms())
    body = msgspec.json.decode(c.body)
    assert (body["MobileNo"], body["Status"], body["Error"], body["Sequence"]) == ("0049", "Failed", INVALID_NUMBER, 1)
    assert body["ErrorLogsID"] != ""
    assert (c.url, c.from_account) == ("https://hooks.example/x", False)


async def test_a_later_event_waits_until_the_earlier_one_is_delivered(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    sent = await make.sent(account, callback="yes")
    await store.apply_receipts([Receipt(sent.carrier, sent.ref, SmsStatus.DELIVERED)], now=clock.advance(ms=10))
    [first] = await claim(store, clock.now_ms())
    assert first.sequence == 1
    assert await claim(store, clock.advance(ms=LEASE - 1)) == []  # Delivered waits; Sent is leased
    await store.finish_callbacks([result(first, CallbackState.DELIVERED, clock.now_ms())])
    [second] = await claim(store, clock.now_ms())
    assert (second.sequence, msgspec.json.decode(second.body)["Status"]) == (2, "Delivered")


async def test_two_changes_in_one_write_are_due_one_at_a_time(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    await make.send(account, callback="yes")
    [d] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    await store.finish(
        [Outcome(d.id, d.attempt, SmsStatus.SENT, carrier="sim", carrier_ref="r"),
         Outcome(d.id, d.attempt, SmsStatus.DELIVERED)],
        now=clock.now_ms(),
    )  # fmt: skip
    assert [c.sequence for c in await claim(store, clock.now_ms())] == [1]
    assert await store.pending_callbacks() == 2


async def test_a_claimed_callback_is_not_handed_out_again_until_its_lease_ends(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    await make.sent(await make.account(), callback="yes")
    [c] = await claim(store, clock.now_ms())
    assert await claim(store, clock.advance(ms=LEASE - 1)) == []
    [again] = await claim(store, clock.advance(ms=1))
    assert (again.id, again.attempt) == (c.id, c.attempt + 1)
    # The first claim's late result is logged but changes nothing: the second claim owns it.
    await store.finish_callbacks([result(c, CallbackState.DELIVERED, clock.now_ms())])
    view = await store.get_callback(c.account_id, c.id)
    assert view is not None
    assert (view.state, len(view.history)) == (CallbackState.PENDING, 1)


async def test_a_retry_is_due_at_its_time_and_every_attempt_is_logged(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    await make.sent(await make.account(), callback="yes")
    [c] = await claim(store, clock.now_ms())
    await store.finish_callbacks(
        [result(c, CallbackState.PENDING, clock.now_ms(), status=500, retry_at=clock.now_ms() + 5000)]
    )
    assert await claim(store, clock.advance(ms=4999)) == []
    [c2] = await claim(store, clock.advance(ms=1))
    await store.finish_callbacks([result(c2, CallbackState.DELIVERED, clock.now_ms())])
    view = await store.get_callback(c.account_id, c.id)
    assert view is not None
    assert view.state is CallbackState.DELIVERED
    assert [(a.status_code, a.error) for a in view.history] == [(500, "HTTP 500"), (200, None)]
    assert (view.attempts, view.last_status, view.due_at) == (2, 200, None)


async def test_giving_up_makes_the_next_event_due_and_a_replay_sends_it_again(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    sent = await make.sent(account, callback="yes")
    await store.apply_receipts([Receipt(sent.carrier, sent.ref, SmsStatus.DELIVERED)], now=clock.now_ms())
    [first] = await claim(store, clock.now_ms())
    await store.finish_callbacks([result(first, CallbackState.FAILED, clock.now_ms(), status=500)])
    [second] = await claim(store, clock.now_ms())
    assert second.sequence == 2
    assert [v.id for v in await store.list_callbacks(account.id, state=CallbackState.FAILED, limit=10)] == [first.id]

    other = await make.account()
    assert await store.replay_callback(other.id, first.id, now=clock.now_ms()) == "missing"
    assert await store.replay_callback(account.id, second.id, now=clock.now_ms()) == "pending"  # in flight: left alone
    # Its destination's second callback is pending: the replay waits until that one is done.
    assert await store.replay_callback(account.id, first.id, now=clock.advance(ms=1000)) == "replayed"
    assert await claim(store, clock.now_ms()) == []
    await store.finish_callbacks([result(second, CallbackState.DELIVERED, clock.now_ms())])
    [replayed] = await claim(store, clock.now_ms())
    assert (replayed.id, replayed.attempt) == (first.id, 1)
    assert await store.list_callbacks(account.id, state=CallbackState.FAILED, limit=10) == []
    await store.finish_callbacks([result(replayed, CallbackState.DELIVERED, clock.now_ms())])
    # Nothing else pending: a replay is due at once.
    assert await store.replay_callback(account.id, second.id, now=clock.now_ms()) == "replayed"
    assert [c.id for c in await claim(store, clock.now_ms())] == [second.id]


async def test_a_410_disables_the_account_url(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    await store.set_callback_url(account.id, "sms", "https://hooks.example/sms")
    await make.sent(account, callback="yes")
    await make.sent(account, callback="yes")
    first, second = await claim(store, clock.now_ms())
    assert first.url == "https://hooks.example/sms" and first.disabled is None
    await store.finish_callbacks([result(first, CallbackState.FAILED, clock.now_ms(), status=410, disable="410 Gone")])
    got = await store.get_account(account.id)
    assert got is not None and got.sms_callback_disabled == "410 Gone"
    await store.finish_callbacks(
        [result(second, CallbackState.PENDING, clock.now_ms(), status=500, retry_at=clock.now_ms())]
    )
    [again] = await claim(store, clock.now_ms())
    assert (again.id, again.disabled) == (second.id, "410 Gone")


async def test_a_410_from_a_url_that_was_changed_meanwhile_does_not_disable_the_new_one(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    await store.set_callback_url(account.id, "sms", "https://old.example/sms")
    await make.sent(account, callback="yes")
    [c] = await claim(store, clock.now_ms())
    await store.set_callback_url(account.id, "sms", "https://new.example/sms")  # while the attempt runs
    await store.finish_callbacks([result(c, CallbackState.FAILED, clock.now_ms(), status=410, disable="410 Gone")])
    got = await store.get_account(account.id)
    assert got is not None
    assert (got.sms_callback_url, got.sms_callback_disabled) == ("https://new.example/sms", None)


async def test_callbacks_are_listed_per_account_newest_first(store: Store, make: Factory, clock: FakeClock) -> None:
    mine, theirs = await make.account(), await make.account()
    for _ in range(3):
        await make.sent(mine, callback="yes")
    await make.sent(theirs, callback="yes")
    listed = await store.list_callbacks(mine.id, state=None, limit=10)
    assert len(listed) == 3 and [v.id for v in listed] == sorted((v.id for v in listed), reverse=True)
    assert {v.account_id for v in listed} == {mine.id}
    assert [v.id for v in await store.list_callbacks(mine.id, state=None, limit=2, before_id=listed[0].id)] == [
        v.id for v in listed[1:]
    ]
    assert await store.get_callback(theirs.id, listed[0].id) is None
    assert await store.pending_callbacks() == 4


async def test_a_cancelled_callback_is_attempted_no_more_and_the_next_one_becomes_due(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    sent = await make.sent(account, callback="yes")
    await store.apply_receipts([Receipt(sent.carrier, sent.ref, SmsStatus.DELIVERED)], now=clock.advance(ms=10))
    [first] = await claim(store, clock.now_ms())  # Sent, on its way to a URL typed by mistake
    retry = result(first, CallbackState.PENDING, clock.now_ms(), status=500, retry_at=clock.now_ms() + 5_000)
    await store.finish_callbacks([retry])
    assert await store.cancel_callback(account.id, first.id, now=clock.advance(ms=1)) == "cancelled"
    [second] = await claim(store, clock.advance(ms=10_000))  # only Delivered: Sent is never attempted again
    assert (second.sequence, msgspec.json.decode(second.body)["Status"]) == (2, "Delivered")
    view = await store.get_callback(account.id, first.id)
    assert view is not None and (view.state, view.due_at, len(view.history)) == (CallbackState.CANCELLED, None, 1)
    # A second cancel, another account's, an unknown id: nothing changes.
    assert await store.cancel_callback(account.id, first.id, now=clock.now_ms()) == "final"
    assert await store.cancel_callback((await make.account()).id, second.id, now=clock.now_ms()) == "missing"
    assert await store.cancel_callback(account.id, second.id + 1_000, now=clock.now_ms()) == "missing"
    # Once fixed, a cancelled callback can be replayed.
    assert await store.replay_callback(account.id, first.id, now=clock.now_ms()) == "replayed"
    cancelled = await store.list_callbacks(account.id, state=CallbackState.CANCELLED, limit=10)
    assert cancelled == []


async def test_an_attempt_on_its_way_when_cancelled_is_logged_and_changes_nothing(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    await make.sent(account, callback="yes")
    [c] = await claim(store, clock.now_ms())
    assert await store.cancel_callback(account.id, c.id, now=clock.advance(ms=5)) == "cancelled"
    await store.finish_callbacks([result(c, CallbackState.DELIVERED, clock.advance(ms=5))])
    view = await store.get_callback(account.id, c.id)
    assert view is not None
    assert view.state is CallbackState.CANCELLED
    assert [a.status_code for a in view.history] == [200]
    assert await store.pending_callbacks() == 0
