"""Inbound messages as they are stored: routed to the account whose number (and keyword) they were sent to,
and, for an account with an inbound callback URL, the callback written to the outbox in the same transaction
(so a message stored is a callback that will be sent). The decisions, no SQL; `operations.store_inbound`
reads and writes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from switchboard.domain import inbound
from switchboard.domain.clock import format_time
from switchboard.store.records import CallbackEvent, InboundMessage, StoredInbound

INBOUND = "inbound"
"""The callback kind of an inbound message: it goes to the account's `inbound_callback_url`."""


class NumberKey(NamedTuple):
    number: str


class Owner(NamedTuple):
    """A numbers row, with what the callback needs of its account."""

    number: str
    keyword: str
    account_id: int
    inbound_callback_url: str | None


class InboundRow(NamedTuple):
    """An inbound_messages row as inserted (its id is the database's: ids grow in arrival order)."""

    carrier: str
    source_addr: str
    destination_addr: str
    body: str | None
    data_coding: int
    raw: str | None
    received_at: int
    account_id: int | None
    keyword: str | None
    to_number: str
    from_number: str


def number_keys(messages: list[InboundMessage]) -> list[NumberKey]:
    """The numbers the messages were sent to, as the numbers table holds them: whose owners to read."""
    return [NumberKey(n) for n in sorted({inbound.number_key(m.destination_addr) for m in messages})]


def route(messages: list[InboundMessage], owners: list[Owner]) -> list[InboundRow]:
    """Each message as a row, with its owner (None: the operator's unrouted inbox), in the order given."""
    by_key = {(o.number, o.keyword): o.account_id for o in owners}
    rows = []
    for m in messages:
        to = inbound.number_key(m.destination_addr)
        account_id, keyword = inbound.owner(by_key, to, m.body)
        rows.append(InboundRow(*m, account_id, keyword or None, to, inbound.number_key(m.source_addr)))
    return rows


def callbacks(rows: list[InboundRow], ids: list[int], owners: list[Owner]) -> list[CallbackEvent]:
    """The callbacks of the routed rows (`ids` theirs, in the same order) whose account has an inbound
    callback URL; the URL is read at each attempt (`url` None), so a changed one is followed."""
    with_url = {o.account_id for o in owners if o.inbound_callback_url}
    return [
        CallbackEvent(row.account_id, INBOUND, row_id, 1, None, callback_body(row_id, row), row.received_at, True)
        for row_id, row in zip(ids, rows, strict=True)
        if row.account_id is not None and row.account_id in with_url
    ]


_encode = msgspec.json.Encoder().encode


def callback_body(row_id: int, row: InboundRow) -> str:
    return _encode(document(row_id, row.from_number, row.to_number, row.body, row.received_at, row.keyword)).decode()


def stored_document(m: StoredInbound) -> dict[str, Any]:
    """A stored message as the API and the CLI list it: the fields of its callback."""
    return document(m.id, m.from_number or m.source_addr, m.to_number or m.destination_addr, m.body, m.received_at,
                    m.keyword)  # fmt: skip


def document(
    row_id: int, from_number: str, to_number: str, body: str | None, received_at: int, keyword: str | None
) -> dict[str, Any]:
    """The inbound callback of the contract (ARCHITECTURE.md §2, "Two-way messaging"): MobileNo (who sent it)
    and To (our number) in E.164 when valid, else as the carrier wrote them. Each stored message is one part as
    the carrier handed it over (parts are not joined yet), so Segments is 1; Message is "" when its data_coding
    is not one we decode."""
    return {
        "ID": str(row_id),
        "MobileNo": from_number,
        "To": to_number,
        "Message": body or "",
        "DateTime": format_time(received_at),
        "Segments": 1,
        "Keyword": keyword or "",
    }
