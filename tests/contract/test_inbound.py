"""Inbound (mobile-originated) messages in the store. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from switchboard.store.base import Store
from switchboard.store.records import InboundMessage, StoredInbound
from tests.contract.conftest import START_MS, Backend


def mo(n: int, *, body: str | None = "hello", raw: str | None = None, data_coding: int = 0) -> InboundMessage:
    return InboundMessage("smsc1", f"4477009000{n:02d}", "12345", body, data_coding, raw, START_MS + n)


async def test_stored_messages_are_listed_newest_first_with_every_field(store: Store, backend: Backend) -> None:
    messages = [
        mo(1),
        mo(2, body="Grüße 😀", data_coding=8),
        mo(3, body=None, raw="00ff10", data_coding=4),
        mo(4, body="part one", raw="0500030a0201" + b"part one".hex()),
    ]
    await store.store_inbound(messages[:1])
    await store.store_inbound(messages[1:])
    await store.store_inbound([])
    assert await backend.count("inbound_messages") == 4
    listed = await store.list_inbound(limit=10)
    stored_fields = [f for f in InboundMessage._fields if f not in ("reference", "total", "seq")]
    assert [InboundMessage(*(getattr(s, f) for f in stored_fields)) for s in listed] == messages[::-1]
    assert [(s.segments, s.missing) for s in listed] == [(1, None)] * 4
    assert all(isinstance(s, StoredInbound) for s in listed)
    ids = [s.id for s in listed]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4


async def test_a_batch_keeps_its_order_and_pages_with_before_id(store: Store) -> None:
    await store.store_inbound([mo(n) for n in range(1, 31)])
    first = await store.list_inbound(limit=12)
    assert [s.received_at - START_MS for s in first] == list(range(30, 18, -1))
    second = await store.list_inbound(limit=12, before_id=first[-1].id)
    assert [s.received_at - START_MS for s in second] == list(range(18, 6, -1))
    rest = await store.list_inbound(limit=100, before_id=second[-1].id)
    assert [s.received_at - START_MS for s in rest] == list(range(6, 0, -1))
    assert await store.list_inbound(limit=5, before_id=rest[-1].id) == []


async def test_nothing_stored_lists_nothing(store: Store) -> None:
    assert await store.list_inbound(limit=10) == []
