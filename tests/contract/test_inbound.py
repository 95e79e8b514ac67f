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


# concatenated messages and resends (store/inbound.py)


def part(seq: int, payload: bytes, *, total: int = 3, ref: int = 0x1234, at: int = 0) -> InboundMessage:
    header = bytes((6, 8, 4, ref >> 8, ref & 0xFF, total, seq))  # a 16-bit reference
    raw = (header + payload).hex()
    return InboundMessage("smsc1", "447700900001", "12345", None, 8, raw, START_MS + at, ref, total, seq)


UCS2 = "Привет, мир 😀 — три части".encode("utf-16-be")


async def test_parts_are_stored_then_joined_into_one_message_by_the_last(store: Store, backend: Backend) -> None:
    await store.store_inbound([part(3, UCS2[30:], at=3)])
    await store.store_inbound([part(1, UCS2[:15], at=1)])  # the emoji and an odd octet split across parts
    assert await store.list_inbound(limit=10) == []
    assert await backend.count("inbound_parts") == 2
    await store.store_inbound([part(2, UCS2[15:30], at=2)])
    [whole] = await store.list_inbound(limit=10)
    assert (whole.body, whole.segments, whole.missing, whole.raw) == (UCS2.decode("utf-16-be"), 3, None, None)
    assert whole.received_at == START_MS + 3
    assert await backend.count("inbound_parts") == 0


async def test_a_message_whose_parts_stopped_coming_is_stored_as_what_came(store: Store, backend: Backend) -> None:
    await store.store_inbound([part(1, UCS2[:16], at=0), part(3, UCS2[32:], at=1, ref=9)])
    await store.store_inbound([part(2, UCS2[16:32], at=50_000, ref=9)])
    assert await store.sweep_inbound(parts_before=START_MS, seen_before=0) == 0  # nothing that old yet
    assert await store.sweep_inbound(parts_before=START_MS + 1, seen_before=0) == 1  # ref 0x1234 only
    [whole] = await store.list_inbound(limit=10)
    assert (whole.body, whole.segments, whole.missing) == (UCS2[:16].decode("utf-16-be"), 1, "2,3")
    assert whole.raw == UCS2[:16].hex()
    assert await backend.count("inbound_parts") == 2  # ref 9's two parts still wait for their third


async def test_a_resend_within_the_window_is_taken_once(store: Store, backend: Backend) -> None:
    first = mo(1, body="OK thanks")  # not a STOP or START: those are never taken for resends
    await store.store_inbound([first, first])  # in one batch
    await store.store_inbound([first._replace(received_at=START_MS + 299_000)])  # the SMSC's resend
    await store.store_inbound([part(1, UCS2[:16]), part(1, UCS2[:16])])
    assert await backend.count("inbound_messages") == 1
    assert await backend.count("inbound_parts") == 1
    await store.store_inbound([first._replace(received_at=START_MS + 302_000)])  # past the window: a new one
    assert await backend.count("inbound_messages") == 2
    await store.sweep_inbound(parts_before=0, seen_before=START_MS + 400_000)
    assert await backend.count("inbound_seen") == 0
