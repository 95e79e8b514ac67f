"""Numbers assigned to accounts, and inbound messages routed to them as they are stored, with their callback in
the outbox (ARCHITECTURE.md §2, "Two-way messaging"). Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import msgspec

from switchboard.domain.inbound import keyword_key, number_key
from switchboard.store.base import Store
from switchboard.store.records import Account, CallbackResult, CallbackState, InboundMessage
from tests.clock import FakeClock
from tests.contract.conftest import START_MS, Factory

LEASE = 30_000
SHARED = "+16175550100"
SHORT_CODE = "12345"


def mo(to: str, body: str | None, *, sender: str = "16175551212", at: int = 0) -> InboundMessage:
    return InboundMessage("smsc1", sender, to, body, 0, None, START_MS + at)


async def assign(store: Store, account: Account, number: str, keyword: str = "") -> int:
    return await store.assign_number(number_key(number), keyword_key(keyword), account.id, now=START_MS)


async def with_inbound_url(store: Store, account: Account, url: str = "https://hooks.example/in") -> None:
    await store.set_callback_url(account.id, "inbound", url)


async def test_numbers_are_assigned_listed_and_unassigned(store: Store, make: Factory) -> None:
    a, b = await make.account("a"), await make.account("b")
    assert await assign(store, a, "0016175550100") == a.id
    assert await assign(store, b, "+1 617 555 0100", "pizza") == b.id
    assert await assign(store, b, SHORT_CODE) == b.id
    listed = await store.list_numbers()
    assert [(n.number, n.keyword, n.account_name) for n in listed] == [
        (SHARED, "", "a"),
        (SHARED, "PIZZA", "b"),
        (SHORT_CODE, "", "b"),
    ]
    assert [(n.number, n.keyword) for n in await store.list_numbers(b.id)] == [(SHARED, "PIZZA"), (SHORT_CODE, "")]
    assert await store.unassign_number(SHARED, "PIZZA")
    assert not await store.unassign_number(SHARED, "PIZZA")
    assert [n.keyword for n in await store.list_numbers(b.id)] == [""]


async def test_an_assigned_number_stays_with_its_account(store: Store, make: Factory) -> None:
    a, b = await make.account(), await make.account()
    await assign(store, a, SHARED)
    assert await assign(store, b, "16175550100") == a.id  # written another way: the same number
    assert await assign(store, a, SHARED) == a.id
    assert [n.account_id for n in await store.list_numbers()] == [a.id]


async def test_a_message_to_an_assigned_number_is_the_accounts_and_its_callback_is_written(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    a = await make.account()
    await assign(store, a, SHARED)
    await with_inbound_url(store, a)
    await store.store_inbound([mo("16175550100", "Hello there", at=5)])
    [m] = await store.list_account_inbound(a.id, limit=10)
    assert (m.account_id, m.keyword, m.to_number, m.from_number) == (a.id, None, SHARED, "+16175551212")
    assert (m.destination_addr, m.source_addr) == ("16175550100", "16175551212")  # as the carrier wrote them
    [c] = await store.claim_callbacks(now=clock.now_ms() + 10, limit=10, lease_ms=LEASE)
    assert (c.kind, c.subject_id, c.url, c.from_account, c.account_id) == ("inbound", m.id, "https://hooks.example/in",
                                                                          True, a.id)  # fmt: skip
    assert msgspec.json.decode(c.body) == {
        "ID": str(m.id),
        "MobileNo": "+16175551212",
        "To": SHARED,
        "Message": "Hello there",
        "DateTime": "2025-06-15 15:06:40.005",
        "Segments": 1,
        "MissingParts": [],
        "Keyword": "",
    }


async def test_without_an_inbound_url_the_message_is_stored_and_no_callback_is_written(
    store: Store, make: Factory, backend: object
) -> None:
    a = await make.account()
    await store.set_callback_url(a.id, "sms", "https://hooks.example/sms")  # another kind's URL does not count
    await assign(store, a, SHARED)
    await store.store_inbound([mo(SHARED, "hi")])
    assert len(await store.list_account_inbound(a.id, limit=10)) == 1
    assert await store.pending_callbacks() == 0


async def test_a_message_to_an_unassigned_number_lands_in_the_unrouted_inbox(store: Store, make: Factory) -> None:
    a = await make.account()
    await assign(store, a, SHARED)
    await with_inbound_url(store, a)
    await store.store_inbound([mo("+16175550199", "wrong number"), mo("54321", "short code")])
    assert await store.list_account_inbound(a.id, limit=10) == []
    unrouted = await store.list_account_inbound(None, limit=10)
    assert [(m.to_number, m.account_id) for m in unrouted] == [("54321", None), ("+16175550199", None)]
    assert await store.pending_callbacks() == 0


async def test_a_keyword_on_a_shared_number_routes_to_its_account_in_any_spacing_and_case(
    store: Store, make: Factory
) -> None:
    main, pizza, taxi = await make.account(), await make.account(), await make.account()
    await assign(store, main, SHARED)
    await assign(store, pizza, SHARED, "Pizza")
    await assign(store, taxi, SHARED, " TAXI ")
    await store.store_inbound([
        mo(SHARED, "  pIZZa   large, no olives"),
        mo("0016175550100", "taxi"),
        mo(SHARED, "Taxi! to the airport"),
        mo(SHARED, "pizzas please"),  # not the keyword: the number's own account
        mo(SHARED, None),
        mo(SHARED, "   "),
    ])  # fmt: skip
    got_pizza = await store.list_account_inbound(pizza.id, limit=10)
    assert [(m.body, m.keyword) for m in got_pizza] == [("  pIZZa   large, no olives", "PIZZA")]
    got_taxi = await store.list_account_inbound(taxi.id, limit=10)
    assert [(m.body, m.keyword) for m in got_taxi] == [("Taxi! to the airport", "TAXI"), ("taxi", "TAXI")]
    got_main = await store.list_account_inbound(main.id, limit=10)
    assert [(m.body, m.keyword) for m in got_main] == [("   ", None), (None, None), ("pizzas please", None)]


async def test_a_keyword_without_the_number_itself_leaves_the_rest_unrouted(store: Store, make: Factory) -> None:
    pizza = await make.account()
    await assign(store, pizza, SHORT_CODE, "PIZZA")
    await store.store_inbound([mo(SHORT_CODE, "pizza"), mo(SHORT_CODE, "hello")])
    assert [m.body for m in await store.list_account_inbound(pizza.id, limit=10)] == ["pizza"]
    assert [m.body for m in await store.list_account_inbound(None, limit=10)] == ["hello"]


async def test_each_message_of_a_batch_gets_its_own_callback_in_order(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    a, b = await make.account(), await make.account()
    await assign(store, a, SHARED)
    await assign(store, b, SHORT_CODE)
    await with_inbound_url(store, a)
    await with_inbound_url(store, b, "https://b.example/in")
    await store.store_inbound([mo(SHARED, f"m{n}", at=n) if n % 2 else mo(SHORT_CODE, f"m{n}", at=n)
                               for n in range(1, 9)])  # fmt: skip
    claimed = await store.claim_callbacks(now=clock.now_ms() + 100, limit=100, lease_ms=LEASE)
    stored = {m.id: m for m in await store.list_account_inbound(a.id, limit=10)}
    stored |= {m.id: m for m in await store.list_account_inbound(b.id, limit=10)}
    assert len(claimed) == 8
    for c in claimed:
        body = msgspec.json.decode(c.body)
        m = stored[c.subject_id]
        assert (body["ID"], body["Message"], c.account_id) == (str(m.id), m.body, m.account_id)
        assert c.url == ("https://hooks.example/in" if m.account_id == a.id else "https://b.example/in")


async def test_the_account_listing_filters_and_pages(store: Store, make: Factory) -> None:
    a = await make.account()
    await assign(store, a, SHARED)
    await assign(store, a, SHORT_CODE)
    await store.store_inbound([
        mo(SHARED if n % 2 else SHORT_CODE, f"m{n}", sender="16175551212" if n < 6 else "+447700900123", at=n)
        for n in range(1, 11)
    ])  # fmt: skip
    first = await store.list_account_inbound(a.id, limit=4)
    assert [m.body for m in first] == ["m10", "m9", "m8", "m7"]
    second = await store.list_account_inbound(a.id, limit=4, before_id=first[-1].id)
    assert [m.body for m in second] == ["m6", "m5", "m4", "m3"]
    to_short = await store.list_account_inbound(a.id, limit=10, to_number=SHORT_CODE)
    assert [m.body for m in to_short] == ["m10", "m8", "m6", "m4", "m2"]
    from_uk = await store.list_account_inbound(a.id, limit=10, from_number="+447700900123", to_number=SHARED)
    assert [m.body for m in from_uk] == ["m9", "m7"]
    since = await store.list_account_inbound(a.id, limit=10, since=START_MS + 8)
    assert [m.body for m in since] == ["m10", "m9", "m8"]


async def test_the_inbound_url_is_disabled_by_a_410_and_enabled_when_set_again(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    a = await make.account()
    await assign(store, a, SHARED)
    await with_inbound_url(store, a)
    await store.store_inbound([mo(SHARED, "one")])
    [c] = await store.claim_callbacks(now=clock.now_ms() + 10, limit=10, lease_ms=LEASE)
    await store.finish_callbacks([CallbackResult(
        c.id, c.attempt, CallbackState.FAILED, clock.now_ms(), c.url, 410, 5, "HTTP 410", disable="410 Gone",
        account_id=c.account_id, kind=c.kind,
    )])  # fmt: skip
    got = await store.get_account(a.id)
    assert got is not None and (got.inbound_callback_url, got.inbound_callback_disabled) == (
        "https://hooks.example/in", "410 Gone")  # fmt: skip
    assert got.sms_callback_disabled is None and got.voice_callback_disabled is None
    await store.store_inbound([mo(SHARED, "two", at=20)])
    [again] = await store.claim_callbacks(now=clock.now_ms() + 30, limit=10, lease_ms=LEASE)
    assert again.disabled == "410 Gone"
    await with_inbound_url(store, a, "https://hooks.example/in2")
    got = await store.get_account(a.id)
    assert got is not None and (got.inbound_callback_url, got.inbound_callback_disabled) == (
        "https://hooks.example/in2", None)  # fmt: skip
