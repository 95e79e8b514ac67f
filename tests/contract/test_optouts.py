"""Opt-out in the store (ARCHITECTURE.md §2, "Two-way messaging": Opt-out): keywords in routed inbound messages
change their account's list and write their replies in the transaction that stores them; the list through the
API's store methods; an opted-out destination stored Failed with its error log and callback. Every test runs on
SQLite and on PostgreSQL."""

from __future__ import annotations

from switchboard.domain.catalogue import DestinationError
from switchboard.domain.inbound import number_key
from switchboard.domain.optout import Keyword, default_reply
from switchboard.domain.statuses import SmsStatus
from switchboard.store.base import Store
from switchboard.store.records import Account, InboundMessage, NewErrorLog
from tests.contract.conftest import START_MS, Backend, Factory

OURS = "+16175550100"
HANDSET = "+16175551212"


def mo(body: str, *, sender: str = "0016175551212", to: str = "16175550100", at: int = 0) -> InboundMessage:
    return InboundMessage("smsc1", sender, to, body, 0, None, START_MS + at)


async def owned(store: Store, make: Factory, name: str = "acme") -> Account:
    account = await make.account(name)
    await store.assign_number(OURS, "", account.id, now=START_MS)
    return account


async def numbers(store: Store, account: Account) -> list[tuple[str, str]]:
    return [(o.number, o.source) for o in await store.list_opt_outs(account.id, limit=100)]


async def test_stop_puts_the_sender_on_the_list_with_the_confirmation_in_the_outbox(
    store: Store, make: Factory, backend: Backend
) -> None:
    account = await owned(store, make)
    await store.store_inbound([mo("  sToP! ")])
    assert await numbers(store, account) == [(HANDSET, "keyword")]
    [reply] = await store.pending_replies(limit=10)
    assert (reply.account_id, reply.sender, reply.mobile_no) == (account.id, OURS, HANDSET)
    assert reply.body == default_reply(Keyword.OPT_OUT, "acme")
    assert await backend.count("inbound_messages") == 1  # the keyword is an inbound message like any other
    await store.delete_reply(reply.id)
    assert await store.pending_replies(limit=10) == []


async def test_keywords_in_one_batch_apply_in_order_and_help_changes_nothing(store: Store, make: Factory) -> None:
    account = await owned(store, make)
    await store.set_reply_texts(account.id, opt_out="Bye", opt_in="", help_text="Call 555-0100")
    await store.store_inbound(
        [mo("STOP", at=1), mo("start", at=2), mo("help", at=3), mo("QUIT", sender="+447700900001", at=4)]
    )
    assert await numbers(store, account) == [("+447700900001", "keyword")]
    replies = await store.pending_replies(limit=10)
    assert [(r.mobile_no, r.body) for r in replies] == [
        (HANDSET, "Bye"), (HANDSET, "Call 555-0100"), ("+447700900001", "Bye"),
    ]  # fmt: skip
    assert await store.get_reply_texts(account.id) == ("Bye", "", "Call 555-0100")


async def test_a_message_that_is_more_than_a_keyword_or_unrouted_changes_nothing(store: Store, make: Factory) -> None:
    account = await owned(store, make)
    await store.store_inbound([mo("stop please"), mo("STOP", to="+16175550199")])
    assert await numbers(store, account) == []
    assert await store.pending_replies(limit=10) == []


async def test_the_list_is_added_to_listed_in_pages_and_removed_from(store: Store, make: Factory) -> None:
    account, other = await make.account(), await make.account()
    assert await store.add_opt_out(account.id, number_key("0016175551212"), source="api", now=START_MS)
    assert not await store.add_opt_out(account.id, number_key("+1 617 555 1212"), source="api", now=START_MS)
    for n in range(3):
        await store.add_opt_out(account.id, f"+4477009000{n:02d}", source="api", now=START_MS)
    first = await store.list_opt_outs(account.id, limit=2)
    rest = await store.list_opt_outs(account.id, limit=10, after=first[-1].number)
    assert [o.number for o in first + rest] == [HANDSET, "+447700900000", "+447700900001", "+447700900002"]
    assert await store.opted_out_among(account.id, [HANDSET, "+15555550100"]) == {HANDSET}
    assert await store.opted_out_among(other.id, [HANDSET]) == set()
    assert await store.remove_opt_out(account.id, HANDSET)
    assert not await store.remove_opt_out(account.id, HANDSET)


async def test_an_opted_out_destination_is_stored_failed_with_its_error_log_and_callback(
    store: Store, make: Factory, backend: Backend
) -> None:
    account = await make.account()
    message, destinations, _ = make.message(account, [HANDSET, "+16175551213"], callback="yes",
                                            callback_url="https://hooks.example/sms")  # fmt: skip
    error = NewErrorLog(make.ids.next(), account.id, message.id + 1, DestinationError.OPTED_OUT.code,
                        DestinationError.OPTED_OUT.text, START_MS)  # fmt: skip
    await store.accept(message, destinations, [error])
    view = await store.get_message(account.id, message.id)
    assert view is not None
    failed, going = view.destinations
    assert (failed.status, failed.error, failed.error_log_id) == (SmsStatus.FAILED, "Opted out", error.id)
    assert going.status is SmsStatus.RECEIVED
    assert await backend.count("callbacks") == 1


async def test_stop_start_stop_within_the_resend_window_leaves_the_sender_opted_out(
    store: Store, make: Factory
) -> None:
    account = await owned(store, make)
    for at, word in ((1_000, "STOP"), (2_000, "START"), (3_000, "STOP")):  # the same text twice in 5 minutes
        await store.store_inbound([mo(word, at=at)])
    assert await numbers(store, account) == [(HANDSET, "keyword")]
