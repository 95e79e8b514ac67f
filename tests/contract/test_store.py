"""The Store contract: every test runs on SQLite and on PostgreSQL (see conftest.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg
import msgspec
import pytest

from switchboard.domain.statuses import SmsStatus
from switchboard.errors import DuplicateName, IntegrityViolation, StoreError
from switchboard.store.base import Store
from switchboard.store.postgres import PostgresStore
from switchboard.store.records import HeldReceipts, HistoryEntry, InFlight, Outcome, Receipt
from switchboard.store.sqlite import SqliteStore
from tests.clock import FakeClock
from tests.contract.conftest import INVALID_NUMBER, Backend, Factory

LEASE = 30_000

# accounts


async def test_account_is_found_by_id_and_by_name(store: Store, make: Factory) -> None:
    account = await make.account("acme")
    assert await store.get_account(account.id) == account
    assert await store.get_account_by_name("acme") == account
    assert await store.get_account(account.id + 1) is None
    assert await store.get_account_by_name("nobody") is None


async def test_duplicate_account_name_raises_duplicate_name(store: Store, make: Factory) -> None:
    await make.account("acme")
    with pytest.raises(DuplicateName):
        await make.account("acme")
    assert [a.name for a in await store.list_accounts()] == ["acme"]


async def test_duplicate_account_id_is_an_integrity_violation_not_a_duplicate_name(store: Store, make: Factory) -> None:
    account = await make.account("acme")
    with pytest.raises(IntegrityViolation):
        await store.create_account(replace(account, name="other"))


async def test_accounts_are_listed_in_id_order(store: Store, make: Factory) -> None:
    created = [await make.account(name) for name in ("b", "a", "c")]
    assert await store.list_accounts() == created


async def test_each_callback_url_is_set_and_cleared_on_its_own(store: Store, make: Factory) -> None:
    account = await make.account()
    await store.set_callback_url(account.id, "sms", "https://a.example/sms")
    await store.set_callback_url(account.id, "voice", "https://a.example/voice")
    got = await store.get_account(account.id)
    assert got is not None
    assert (got.sms_callback_url, got.voice_callback_url) == ("https://a.example/sms", "https://a.example/voice")
    await store.set_callback_url(account.id, "sms", None)
    got = await store.get_account(account.id)
    assert got is not None
    assert (got.sms_callback_url, got.voice_callback_url) == (None, "https://a.example/voice")


async def test_rotating_the_secret_keeps_the_previous_one(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    await store.rotate_secret(account.id, "whsec_new", now=clock.now_ms())
    got = await store.get_account(account.id)
    assert got is not None
    assert (got.webhook_secret, got.previous_webhook_secret, got.secret_rotated_at) == (
        "whsec_new",
        account.webhook_secret,
        clock.now_ms(),
    )


# keys


async def test_api_key_is_found_by_digest_with_its_account(store: Store, make: Factory) -> None:
    account = await make.account()
    key = await make.key(account, digest="ab" * 32)
    assert await store.find_api_key("ab" * 32) == (key, account)
    assert await store.find_api_key("cd" * 32) is None


async def test_api_keys_are_listed_per_account(store: Store, make: Factory) -> None:
    mine, theirs = await make.account(), await make.account()
    keys = [await make.key(mine), await make.key(mine)]
    await make.key(theirs)
    assert await store.list_api_keys(mine.id) == keys


async def test_revoked_key_is_not_found_and_revoking_again_is_false(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    key = await make.key(account)
    assert await store.revoke_api_key(account.id, key.id, clock.now_ms()) is True
    assert await store.find_api_key(key.digest) is None
    assert await store.revoke_api_key(account.id, key.id, clock.now_ms()) is False
    [listed] = await store.list_api_keys(account.id)
    assert listed.revoked_at == clock.now_ms()


async def test_revoking_another_accounts_key_is_false(store: Store, make: Factory, clock: FakeClock) -> None:
    mine, theirs = await make.account(), await make.account()
    their_key = await make.key(theirs)
    assert await store.revoke_api_key(mine.id, their_key.id, clock.now_ms()) is False
    assert await store.find_api_key(their_key.digest) == (their_key, theirs)


# messages


async def test_accepted_message_reads_back_with_destinations_in_position_order(
    store: Store, make: Factory, backend: Backend
) -> None:
    account = await make.account()
    message, destinations, errors = make.message(account, ["+16175550100", "0123", "+16175550101"])
    assert await store.accept(message, destinations, errors) == message.id

    view = await store.get_message(account.id, message.id)
    assert view is not None
    assert (view.id, view.account_id, view.sender, view.body, view.segments) == (
        message.id, account.id, "Switchboard", "hello", 1,
    )  # fmt: skip
    assert [d.position for d in view.destinations] == [0, 1, 2]
    assert [d.mobile_no for d in view.destinations] == ["+16175550100", "0123", "+16175550101"]
    assert [d.status for d in view.destinations] == [SmsStatus.RECEIVED, SmsStatus.FAILED, SmsStatus.RECEIVED]
    invalid = view.destinations[1]
    assert (invalid.e164, invalid.error, invalid.error_log_id) == (None, INVALID_NUMBER, errors[0].id)
    # A destination stored Failed has had one change after Received (its callback carries Sequence 1).
    assert [d.sequence for d in view.destinations] == [0, 1, 0]
    assert all(d.carrier is None for d in view.destinations)
    assert await backend.count("error_logs") == 1


async def test_accept_that_fails_stores_nothing(store: Store, make: Factory, backend: Backend) -> None:
    account = await make.account()
    message, destinations, errors = make.message(account, ["+16175550100", "bad"])
    clash = errors[0]._replace(id=errors[0].id, destination_id=errors[0].destination_id)
    with pytest.raises(IntegrityViolation):  # the same error log id twice: the last insert fails
        await store.accept(message, destinations, [errors[0], clash])
    assert await store.get_message(account.id, message.id) is None
    assert [await backend.count(t) for t in ("messages", "destinations", "error_logs")] == [0, 0, 0]


async def test_another_accounts_message_is_not_found(store: Store, make: Factory) -> None:
    mine, theirs = await make.account(), await make.account()
    message_id = await make.send(theirs, reference_id="r1")
    assert await store.get_message(mine.id, message_id) is None
    assert await store.find_message_by_reference(mine.id, "r1") is None
    assert await store.get_message(theirs.id, message_id + 1) is None


async def test_find_message_by_reference_returns_the_newest(store: Store, make: Factory) -> None:
    account = await make.account()
    await make.send(account, reference_id="order-7")
    newest = await make.send(account, reference_id="order-7")
    await make.send(account, reference_id="order-8")
    found = await store.find_message_by_reference(account.id, "order-7")
    assert found is not None and found.id == newest
    assert await store.find_message_by_reference(account.id, "order-9") is None


async def test_idempotency_key_returns_the_first_id_and_stores_nothing_new(
    store: Store, make: Factory, backend: Backend
) -> None:
    account, other = await make.account(), await make.account()
    first = await make.send(account, ["+16175550100", "+16175550101"], idempotency_key="k1")
    again = await make.send(account, ["+16175550102", "bad"], idempotency_key="k1")
    assert again == first
    assert (await backend.count("messages"), await backend.count("destinations")) == (1, 2)
    assert await backend.count("error_logs") == 0
    # The key is the account's own: another account may use it, and requests without one never collide.
    assert await make.send(other, idempotency_key="k1") != first
    assert await make.send(account) != await make.send(account)
    assert await backend.count("messages") == 4


async def test_concurrent_requests_with_one_idempotency_key_store_one_message(
    store: Store, make: Factory, backend: Backend
) -> None:
    account = await make.account()
    requests = [make.message(account, idempotency_key="k") for _ in range(5)]
    ids = await asyncio.gather(*(store.accept(*r) for r in requests))
    assert len(set(ids)) == 1 and ids[0] in {r[0].id for r in requests}
    assert (await backend.count("messages"), await backend.count("destinations")) == (1, 1)


async def test_concurrent_accepts_are_each_stored_and_one_the_server_refuses_fails_alone(
    store: Store, make: Factory, backend: Backend
) -> None:
    # PostgreSQL writes accepts that arrive together in one statement: its failure must not be theirs.
    account = await make.account()
    requests = [make.message(account, [f"+1617555{i:04d}", f"+1617556{i:04d}"]) for i in range(40)]
    bad = make.message(account, ["+16175550999"])
    bad = (replace(bad[0], body="a\x00b"), bad[1], bad[2])  # PostgreSQL's text cannot hold NUL
    results = await asyncio.gather(*(store.accept(*r) for r in [*requests[:20], bad, *requests[20:]]),
                                   return_exceptions=True)  # fmt: skip
    good = results[:20] + results[21:]
    assert good == [r[0].id for r in requests]
    if backend.dialect == "postgresql":
        assert isinstance(results[20], StoreError)
    for (message, destinations, _), ident in zip(requests, good, strict=True):
        assert isinstance(ident, int)
        view = await store.get_message(account.id, ident)
        assert view is not None and view.body == message.body
        assert [d.mobile_no for d in view.destinations] == [d.mobile_no for d in destinations]
        assert {d.status for d in view.destinations} == {SmsStatus.RECEIVED}
    assert await backend.count("destinations") == 80 + (backend.dialect == "sqlite")


# the work queue


async def test_claim_hands_out_only_due_destinations(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    due = await make.send(account, ["+16175550100"], delay=-1)
    due_now = await make.send(account, ["+16175550101"], delay=0)
    await make.send(account, ["+16175550102"], delay=1)  # due in the future
    await make.send(account, ["+16175550103"], delay=None)  # never due
    await make.send(account, ["not-a-number"])  # Failed, never due

    claimed = await store.claim(now=clock.now_ms(), limit=10, lease_ms=LEASE)
    assert [c.message_id for c in claimed] == [due, due_now]
    first = claimed[0]
    assert (first.attempt, first.status, first.e164, first.mobile_no) == (
        1, SmsStatus.RECEIVED, "+16175550100", "+16175550100",
    )  # fmt: skip
    assert (first.account_id, first.account_name, first.sender, first.body, first.encoding) == (
        account.id, account.name, "Switchboard", "hello", "gsm7",
    )  # fmt: skip
    assert first.expires_at is None


async def test_a_claim_carries_the_text_and_sender_exactly_as_stored(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    message, destinations, errors = make.message(account, ["+16175550100"])
    body = 'a "quote", a \\ backslash,\na newline, a\ttab, ünïcödé, 😀 and {"json": [1]}'
    message = replace(message, body=body, sender='Shop "24"', encoding="ucs2")
    await store.accept(message, destinations, errors)
    [claimed] = await store.claim(now=clock.now_ms(), limit=10, lease_ms=LEASE)
    assert (claimed.body, claimed.sender, claimed.encoding) == (body, 'Shop "24"', "ucs2")


async def test_claim_respects_the_limit_earliest_due_first(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    ids = [await make.send(account, delay=-d) for d in (10, 50, 30, 40, 20)]
    claimed = await store.claim(now=clock.now_ms(), limit=2, lease_ms=LEASE)
    assert [c.message_id for c in claimed] == [ids[1], ids[3]]


async def test_claimed_destination_is_claimed_again_only_after_its_lease(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    await make.send(account)
    [first] = await store.claim(now=clock.now_ms(), limit=10, lease_ms=LEASE)
    assert await store.claim(now=clock.now_ms(), limit=10, lease_ms=LEASE) == []
    assert await store.claim(now=clock.now_ms() + LEASE - 1, limit=10, lease_ms=LEASE) == []
    [again] = await store.claim(now=clock.now_ms() + LEASE, limit=10, lease_ms=LEASE)
    assert (again.id, again.attempt) == (first.id, first.attempt + 1)


async def test_concurrent_claims_never_hand_out_one_destination_twice(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    await make.send(account, [f"+1617555{n:04d}" for n in range(50)])
    batches = await asyncio.gather(*(store.claim(now=clock.now_ms(), limit=10, lease_ms=LEASE) for _ in range(8)))
    ids = [c.id for batch in batches for c in batch]
    assert len(ids) == len(set(ids)) == 50


async def test_sent_outcome_sets_status_carrier_and_history(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    message_id = await make.send(account)
    [claimed] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    now = clock.advance(ms=1_500)
    outcome = Outcome(claimed.id, claimed.attempt, SmsStatus.SENT, carrier="sim", carrier_ref="ref-1")
    await store.finish([outcome], now=now)

    view = await store.get_message(account.id, message_id)
    assert view is not None
    [dest] = view.destinations
    assert (dest.status, dest.carrier, dest.sequence, dest.updated_at) == (SmsStatus.SENT, "sim", 1, now)
    assert await store.history(claimed.id) == [HistoryEntry("Sent", now, None)]
    assert await store.in_flight("sim", limit=10) == [InFlight(claimed.id, "ref-1", "+16175550100", now)]
    # Finished work is no longer due, however long the lease was.
    assert await store.claim(now=now + 10 * LEASE, limit=10, lease_ms=LEASE) == []


async def test_failed_outcome_keeps_the_error(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    message_id = await make.send(account)
    [claimed] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    await store.finish([Outcome(claimed.id, claimed.attempt, SmsStatus.FAILED, "No route")], now=clock.now_ms())
    view = await store.get_message(account.id, message_id)
    assert view is not None
    assert (view.destinations[0].status, view.destinations[0].error) == (SmsStatus.FAILED, "No route")
    assert await store.history(claimed.id) == [HistoryEntry("Failed", clock.now_ms(), "No route")]


async def test_outcome_of_a_superseded_claim_changes_nothing(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    message_id = await make.send(account)
    [stale] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    [current] = await store.claim(now=clock.advance(ms=LEASE), limit=1, lease_ms=LEASE)
    await store.finish(
        [Outcome(stale.id, stale.attempt, SmsStatus.SENT, carrier="sim", carrier_ref="x")], now=clock.now_ms()
    )
    view = await store.get_message(account.id, message_id)
    assert view is not None
    assert (view.destinations[0].status, view.destinations[0].carrier) == (SmsStatus.RECEIVED, None)
    assert await store.history(stale.id) == []

    await store.finish([Outcome(current.id, current.attempt, SmsStatus.SENT)], now=clock.now_ms())
    view = await store.get_message(account.id, message_id)
    assert view is not None and view.destinations[0].status is SmsStatus.SENT


async def test_retry_outcome_sets_the_next_attempt_and_keeps_the_status(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    message_id = await make.send(account)
    [claimed] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    retry_at = clock.now_ms() + 5_000
    await store.finish(
        [Outcome(claimed.id, claimed.attempt, None, error="throttled", retry_at=retry_at)], now=clock.now_ms()
    )
    view = await store.get_message(account.id, message_id)
    assert view is not None
    assert (view.destinations[0].status, view.destinations[0].error) == (SmsStatus.RECEIVED, "throttled")
    assert view.destinations[0].sequence == 0
    assert await store.claim(now=retry_at - 1, limit=1, lease_ms=LEASE) == []
    [again] = await store.claim(now=retry_at, limit=1, lease_ms=LEASE)
    assert (again.id, again.attempt) == (claimed.id, 2)


async def test_outcome_without_status_or_retry_time_is_refused(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    await make.send(account)
    [claimed] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    with pytest.raises(ValueError):
        await store.finish([Outcome(claimed.id, claimed.attempt, None)], now=clock.now_ms())


async def test_outcomes_for_one_claim_in_one_batch_follow_the_status_graph(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    message_id = await make.send(account)
    [c] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    now = clock.now_ms()
    sent = Outcome(c.id, c.attempt, SmsStatus.SENT, carrier="sim", carrier_ref="r")
    await store.finish([sent, Outcome(c.id, c.attempt, SmsStatus.FAILED, "late")], now=now)
    view = await store.get_message(account.id, message_id)
    assert view is not None
    assert (view.destinations[0].status, view.destinations[0].sequence) == (SmsStatus.SENT, 1)
    assert await store.history(c.id) == [
        HistoryEntry("Sent", now, None),
        HistoryEntry("Failed", now, "ignored: already Sent"),
    ]


async def test_two_changes_of_one_destination_in_one_batch_both_apply(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    message_id = await make.send(account)
    [c] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    now = clock.now_ms()
    sent = Outcome(c.id, c.attempt, SmsStatus.SENT, carrier="sim", carrier_ref="r")
    await store.finish([sent, Outcome(c.id, c.attempt, SmsStatus.DELIVERED)], now=now)
    view = await store.get_message(account.id, message_id)
    assert view is not None
    [dest] = view.destinations
    assert (dest.status, dest.carrier, dest.sequence, dest.delivered_at) == (
        SmsStatus.DELIVERED,
        "sim",
        2,
        now,
    )
    assert [h.status for h in await store.history(c.id)] == ["Sent", "Delivered"]
    assert await store.apply_receipts([Receipt("sim", "r", SmsStatus.EXPIRED)], now=now) == []


async def test_empty_batches_do_nothing(store: Store, clock: FakeClock) -> None:
    await store.finish([], now=clock.now_ms())
    assert await store.apply_receipts([], now=clock.now_ms()) == []
    assert await store.retry_held_receipts(now=clock.now_ms(), drop_before=clock.now_ms()) == HeldReceipts(0, [], 0)


# receipts


async def test_delivery_receipt_moves_sent_to_delivered(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    sent = await make.sent(await make.account(), carrier="sim")
    now = clock.advance(ms=2_000)
    unknown = Receipt("sim", "no-such-ref", SmsStatus.DELIVERED)
    other_carrier = Receipt("other", sent.ref, SmsStatus.DELIVERED)
    receipts = [unknown, Receipt("sim", sent.ref, SmsStatus.DELIVERED), other_carrier]
    assert await store.apply_receipts(receipts, now=now) == [unknown, other_carrier]
    assert await backend.count("held_receipts") == 2  # the unmatched ones, held
    dest = await make.destination(sent)
    assert (dest.status, dest.delivered_at, dest.sequence, dest.updated_at) == (
        SmsStatus.DELIVERED,
        now,
        2,
        now,
    )
    assert (await store.history(sent.destination_id))[-1] == HistoryEntry("Delivered", now, None)
    assert await store.in_flight("sim", limit=10) == []


async def test_contradictory_receipt_for_a_final_destination_is_only_history(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    sent = await make.sent(await make.account())
    first = clock.advance(ms=1_000)
    assert await store.apply_receipts([Receipt("sim", sent.ref, SmsStatus.DELIVERED)], now=first) == []
    late = clock.advance(ms=1_000)
    contradiction = Receipt("sim", sent.ref, SmsStatus.UNDELIVERED, "absent")
    assert await store.apply_receipts([contradiction], now=late) == []
    dest = await make.destination(sent)
    assert (dest.status, dest.delivered_at, dest.sequence, dest.error) == (
        SmsStatus.DELIVERED,
        first,
        2,
        None,
    )
    assert (await store.history(sent.destination_id))[-2:] == [
        HistoryEntry("Delivered", first, None),
        HistoryEntry("Undelivered", late, "ignored: already Delivered"),
    ]


async def test_two_receipts_in_one_batch_apply_in_order(store: Store, make: Factory, clock: FakeClock) -> None:
    sent = await make.sent(await make.account())
    now = clock.advance(ms=1_000)
    receipts = [
        Receipt("sim", sent.ref, SmsStatus.UNDELIVERED, "absent"),
        Receipt("sim", sent.ref, SmsStatus.DELIVERED),
    ]
    assert await store.apply_receipts(receipts, now=now) == []
    dest = await make.destination(sent)
    assert (dest.status, dest.error, dest.delivered_at, dest.sequence) == (
        SmsStatus.UNDELIVERED,
        "absent",
        None,
        2,
    )
    assert [h.detail for h in await store.history(sent.destination_id)] == [
        None, "absent", "ignored: already Undelivered",
    ]  # fmt: skip


# receipts that come before their message's Sent is written: held in the store, matched again later

HELD_MS = 600_000


async def claimed_destination(store: Store, make: Factory, clock: FakeClock, **kw: object) -> tuple[int, int, int, int]:
    """(account id, message id, destination id, attempt) of a one-destination message claimed by a worker
    whose carrier has not answered yet."""
    account = await make.account()
    message_id = await make.send(account, **kw)
    [claimed] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    return account.id, message_id, claimed.id, claimed.attempt


async def retry(store: Store, now: int) -> HeldReceipts:
    return await store.retry_held_receipts(now=now, drop_before=now - HELD_MS)


async def test_a_receipt_before_its_sent_is_held_and_applied_once_sent_is_written(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    account_id, message_id, dest_id, attempt = await claimed_destination(
        store, make, clock, callback="url", callback_url="https://hooks.example/sms"
    )
    early = Receipt("sim", "early", SmsStatus.DELIVERED)
    assert await store.apply_receipts([early], now=clock.advance(ms=5)) == [early]
    assert await backend.count("held_receipts") == 1
    assert await retry(store, clock.advance(ms=100)) == HeldReceipts(0, [], 1)  # its Sent is not written yet
    sent_at = clock.advance(ms=100)
    await store.finish([Outcome(dest_id, attempt, SmsStatus.SENT, carrier="sim", carrier_ref="early")], now=sent_at)
    applied_at = clock.advance(ms=100)
    assert await retry(store, applied_at) == HeldReceipts(1, [], 0)
    assert await backend.count("held_receipts") == 0
    view = await store.get_message(account_id, message_id)
    assert view is not None
    [dest] = view.destinations
    assert (dest.status, dest.delivered_at, dest.sequence) == (SmsStatus.DELIVERED, applied_at, 2)
    assert await store.history(dest_id) == [
        HistoryEntry("Sent", sent_at, None),
        HistoryEntry("Delivered", applied_at, None),
    ]
    callbacks = await store.list_callbacks(account_id, state=None, limit=10)
    assert [msgspec.json.decode(c.body)["Status"] for c in callbacks] == ["Delivered", "Sent"]
    assert [c.sequence for c in callbacks] == [2, 1]
    assert await store.in_flight("sim", limit=10) == []
    assert await retry(store, clock.advance(ms=100)) == HeldReceipts(0, [], 0)  # applied once only


async def test_held_receipts_that_still_match_nothing_are_dropped_once_older_than_drop_before(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    first = Receipt("sim", "gone-1", SmsStatus.DELIVERED)
    first_at = clock.now_ms()
    await store.apply_receipts([first], now=first_at)
    second = Receipt("sim", "gone-2", SmsStatus.UNDELIVERED, "absent")
    second_at = clock.advance(ms=1_000)
    await store.apply_receipts([second], now=second_at)
    # Old too, but its Sent came meanwhile: applied, not dropped.
    _, _, dest_id, attempt = await claimed_destination(store, make, clock)
    late = Receipt("sim", "late", SmsStatus.DELIVERED)
    await store.apply_receipts([late], now=first_at)
    await store.finish(
        [Outcome(dest_id, attempt, SmsStatus.SENT, carrier="sim", carrier_ref="late")], now=clock.now_ms()
    )
    assert await store.retry_held_receipts(now=clock.now_ms(), drop_before=second_at) == HeldReceipts(1, [first], 1)
    assert await backend.count("held_receipts") == 1
    assert await store.retry_held_receipts(now=clock.now_ms(), drop_before=second_at + 1) == HeldReceipts(
        0, [second], 0
    )
    assert await backend.count("held_receipts") == 0


async def test_held_receipts_of_one_reference_are_applied_in_the_order_they_came(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    _, _, a, a_attempt = await claimed_destination(store, make, clock)
    _, _, b, b_attempt = await claimed_destination(store, make, clock)
    # "a": two receipts in one batch; "b": in two batches. The first of each is the one that counts.
    await store.apply_receipts(
        [Receipt("sim", "a", SmsStatus.UNDELIVERED, "absent"), Receipt("sim", "a", SmsStatus.DELIVERED)],
        now=clock.now_ms(),
    )
    await store.apply_receipts([Receipt("sim", "b", SmsStatus.EXPIRED, "too late")], now=clock.advance(ms=1))
    await store.apply_receipts([Receipt("sim", "b", SmsStatus.DELIVERED)], now=clock.advance(ms=1))
    await store.finish(
        [Outcome(a, a_attempt, SmsStatus.SENT, carrier="sim", carrier_ref="a"),
         Outcome(b, b_attempt, SmsStatus.SENT, carrier="sim", carrier_ref="b")],
        now=clock.advance(ms=1),
    )  # fmt: skip
    assert await retry(store, clock.advance(ms=1)) == HeldReceipts(4, [], 0)
    assert [(h.status, h.detail) for h in await store.history(a)] == [
        ("Sent", None), ("Undelivered", "absent"), ("Delivered", "ignored: already Undelivered"),
    ]  # fmt: skip
    assert [(h.status, h.detail) for h in await store.history(b)] == [
        ("Sent", None), ("Expired", "too late"), ("Delivered", "ignored: already Expired"),
    ]  # fmt: skip


async def test_held_receipts_survive_closing_and_opening_the_store(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    account_id, message_id, dest_id, attempt = await claimed_destination(store, make, clock)
    early = Receipt("sim", "early", SmsStatus.DELIVERED)
    assert await store.apply_receipts([early], now=clock.now_ms()) == [early]
    await store.close()  # a crash after the carrier acknowledged the receipt loses nothing either: it is committed
    reopened = SqliteStore.from_url(backend.url) if backend.dialect == "sqlite" else PostgresStore.from_url(backend.url)
    await reopened.open()
    try:
        outcome = Outcome(dest_id, attempt, SmsStatus.SENT, carrier="sim", carrier_ref="early")
        await reopened.finish([outcome], now=clock.advance(ms=10))
        assert await retry(reopened, clock.advance(ms=10)) == HeldReceipts(1, [], 0)
        view = await reopened.get_message(account_id, message_id)
        assert view is not None and view.destinations[0].status is SmsStatus.DELIVERED
    finally:
        await reopened.close()


async def test_a_held_receipt_another_worker_is_matching_is_passed_over(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    if backend.dialect != "postgresql":
        pytest.skip("one process: the embedded store's writer runs one sweep at a time")
    _, _, dest_id, attempt = await claimed_destination(store, make, clock)
    await store.apply_receipts([Receipt("sim", "r", SmsStatus.DELIVERED)], now=clock.now_ms())
    await store.finish([Outcome(dest_id, attempt, SmsStatus.SENT, carrier="sim", carrier_ref="r")], now=clock.now_ms())
    other = await asyncpg.connect(backend.url)  # another worker, in the middle of its sweep
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute("SELECT id FROM held_receipts FOR UPDATE")
        async with asyncio.timeout(5):  # passed over, not waited for
            assert await retry(store, clock.now_ms()) == HeldReceipts(0, [], 1)  # still held: by the other
        await transaction.rollback()
    finally:
        await other.close()
    assert await retry(store, clock.now_ms()) == HeldReceipts(1, [], 0)
    assert [h.status for h in await store.history(dest_id)] == ["Sent", "Delivered"]


async def test_in_flight_lists_the_carriers_sent_destinations(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    a = await make.sent(account, carrier="sim")
    b = await make.sent(account, carrier="sim")
    await make.sent(account, carrier="other")
    c = await make.sent(account, carrier="sim")
    await store.apply_receipts([Receipt("sim", b.ref, SmsStatus.DELIVERED)], now=clock.now_ms())
    listed = await store.in_flight("sim", limit=10)
    assert listed == [
        InFlight(a.destination_id, a.ref, "+16175550100", clock.now_ms()),
        InFlight(c.destination_id, c.ref, "+16175550100", clock.now_ms()),
    ]
    assert [f.destination_id for f in await store.in_flight("sim", limit=1)] == [a.destination_id]
    assert await store.in_flight("nobody", limit=10) == []


# operations


async def test_ping_and_node_id(store: Store, backend: Backend) -> None:
    await store.ping()
    node = await store.node_id()
    assert 0 <= node <= 1023 and await store.node_id() == node  # one node for the store's lifetime
    # Another process on the same database (the CLI beside the server) never gets a live store's node.
    others = [SqliteStore.from_url(backend.url) if backend.dialect == "sqlite" else PostgresStore.from_url(backend.url)
              for _ in range(2)]  # fmt: skip
    for other in others:
        await other.open()
    try:
        assert len({node, *[await other.node_id() for other in others]}) == 3
    finally:
        for other in others:
            await other.close()


async def test_postgres_store_raises_store_error_when_the_server_is_unreachable() -> None:
    url = "postgresql://postgres@127.0.0.1:1/postgres"  # nothing listens on port 1
    with pytest.raises(StoreError):
        await PostgresStore.from_url(url).open()
    lazy = PostgresStore(dsn=url, min_size=0)  # opens without connecting; the first query finds out
    await lazy.open()
    try:
        with pytest.raises(StoreError):
            await lazy.ping()
    finally:
        await lazy.close()


async def test_a_lost_listen_connection_is_opened_again_and_wakes_its_watchers(store: Store, backend: Backend) -> None:
    if backend.dialect != "postgresql":
        pytest.skip("one process: the embedded store has no LISTEN connection")
    woken = asyncio.Event()
    await store.watch_for_work(woken.set)
    admin = await asyncpg.connect(backend.url)
    try:
        # What a server restart does to it: the backend that LISTENs goes away.
        terminated = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'"
        )
        assert terminated == 1
        # Opened again, and the watchers woken once (what was committed meanwhile was announced to nobody).
        await asyncio.wait_for(woken.wait(), timeout=10)
        woken.clear()
        await admin.execute("NOTIFY switchboard_work")  # what an accept in another process sends
        await asyncio.wait_for(woken.wait(), timeout=5)
    finally:
        await admin.close()
