"""Inbound messages as they are stored: a resend not stored twice, the parts of a long message joined, each
message routed to the account whose number (and keyword) it was sent to, and, for an account with an inbound
callback URL, the callback written to the outbox in the same transaction (so a message stored is a callback
that will be sent). The decisions, no SQL; `operations.store_inbound` and `operations.sweep_inbound` read and
write.

Resends. An SMSC that gets no answer to a deliver_sm in time (or ESME_RX_T_APPN, which we answer when the
store write outlasts the response timeout although it then commits) sends the same message again, and SMPP
3.4 gives an MO no id of the SMSC's to tell a resend by (receipted_message_id is for receipts, §5.3.2.12). So
a message is known by a digest of carrier, sender, our number, data_coding and its octets (`seen_key`,
header included, so a part is known by its reference and place too): the same digest again within
DUPLICATE_WINDOW_MS is acknowledged and not stored. The limit, plainly: the same text sent twice by one
handset to one number within the window (a "YES" answering two questions) is kept once.

Parts. A part is stored (inbound_parts) in the transaction that takes it, before the carrier acknowledges it;
the transaction that stores the last part of a message joins them (their payloads put together in order, then
decoded once: `domain.concat`), stores the whole message as any other, and deletes the parts. A message some
of whose parts never come is stored as what came, PARTS_TIME_LIMIT_MS after its first part, by the sweep
(sms/worker.py): Segments the parts that came, `missing` the places of the others; nothing is dropped. A
part comes again (the same place of the same message) before the message is joined: the first is kept.
"""

from __future__ import annotations

import hashlib
from itertools import groupby
from typing import Any, NamedTuple

import msgspec

from switchboard.domain import concat, inbound, optout
from switchboard.domain.clock import format_time
from switchboard.store.records import CallbackEvent, InboundMessage, StoredInbound

DUPLICATE_WINDOW_MS = 300_000
"""An inbound message (or part) identical to one taken this recently is the SMSC's resend (module docstring).
Five minutes: SMSCs retry a deliver_sm answered late or with ESME_RX_T_APPN within seconds to a few minutes."""
PARTS_TIME_LIMIT_MS = 300_000
"""A concatenated message whose parts have not all come this long after its first is stored as what came.
Handsets send the parts of a message within seconds; five minutes leaves room for an SMSC's retries of a part
(Kannel waits 30 minutes by default, which holds an incomplete message back for as long)."""

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
    segments: int
    missing: str | None


class Whole(NamedTuple):
    """A message to store: one that came whole, or one joined from its parts."""

    message: InboundMessage
    segments: int = 1
    missing: str | None = None


class SeenRow(NamedTuple):
    digest: str
    seen_at: int


class PartKey(NamedTuple):
    """Which message a part belongs to."""

    carrier: str
    source_addr: str
    destination_addr: str
    reference: int
    total: int


class PartRow(NamedTuple):
    """An inbound_parts row as inserted."""

    carrier: str
    source_addr: str
    destination_addr: str
    reference: int
    total: int
    seq: int
    data_coding: int
    octets: str
    received_at: int


class StoredPart(NamedTuple):
    """An inbound_parts row as read."""

    id: int
    carrier: str
    source_addr: str
    destination_addr: str
    reference: int
    total: int
    seq: int
    data_coding: int
    octets: str
    received_at: int


def seen_key(m: InboundMessage) -> str:
    """What identifies a message as the SMSC sent it (module docstring, "Resends")."""
    what = "\x1f".join((m.carrier, m.source_addr, m.destination_addr, str(m.data_coding), m.raw or "", m.body or ""))
    return hashlib.sha256(what.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def seen_rows(messages: list[InboundMessage]) -> list[SeenRow]:
    """The digests to record, each once (a resend in the same batch as its first is one too)."""
    rows: dict[str, SeenRow] = {}
    for m in messages:
        digest = seen_key(m)
        rows.setdefault(digest, SeenRow(digest, m.received_at))
    return list(rows.values())


def fresh(messages: list[InboundMessage], new_digests: set[str]) -> list[InboundMessage]:
    """The messages whose digest was recorded now (not seen within the window), each digest once, in order; and
    every STOP or START, seen or not: STOP, START, STOP from one handset within the window must leave it opted
    out (its latest word wins), so a resent one is stored, and answered, once more rather than lost."""
    out = []
    for m in messages:
        digest = seen_key(m)
        if digest in new_digests:
            new_digests.discard(digest)
            out.append(m)
        elif optout.keyword(m.body) in _LIST_CHANGES:
            out.append(m)
    return out


_LIST_CHANGES = (optout.Keyword.OPT_OUT, optout.Keyword.OPT_IN)


def part_row(m: InboundMessage) -> PartRow | None:
    """A part as stored: its payload after the header; None when it is not a part after all."""
    if m.reference is None or m.raw is None:
        return None
    part, payload = concat.split_header(bytes.fromhex(m.raw))
    if part is None or payload is None:
        return None
    return PartRow(m.carrier, m.source_addr, m.destination_addr, part.reference, part.total, part.seq,
                   m.data_coding, payload.hex(), m.received_at)  # fmt: skip


def part_key(p: PartRow | StoredPart) -> PartKey:
    return PartKey(p.carrier, p.source_addr, p.destination_addr, p.reference, p.total)


def join(parts: list[StoredPart], *, complete_only: bool) -> tuple[list[Whole], list[int]]:
    """The messages the parts make (`parts` ordered by message, then place), and the ids of the parts used.
    A message whose parts have not all come is left alone, unless not `complete_only` (the sweep): then it
    is joined from what came."""
    wholes: list[Whole] = []
    used: list[int] = []
    for key, group in groupby(parts, key=part_key):
        by_seq = {p.seq: p for p in reversed(list(group))}  # a place stored twice: the first
        if complete_only and len(by_seq) < key.total:
            continue
        ordered = [by_seq[seq] for seq in sorted(by_seq)]
        used += [p.id for p in ordered]
        wholes.append(joined(key, ordered))
    return wholes, used


def joined(key: PartKey, ordered: list[StoredPart]) -> Whole:
    """One message of its parts (the parts that came, in order): their payloads joined, then decoded."""
    data_coding = ordered[0].data_coding
    octets = b"".join(bytes.fromhex(p.octets) for p in ordered)
    text, lossy = concat.decode(data_coding, octets)
    missing = sorted(set(range(1, key.total + 1)) - {p.seq for p in ordered})
    message = InboundMessage(
        carrier=key.carrier,
        source_addr=key.source_addr,
        destination_addr=key.destination_addr,
        body=text,
        data_coding=data_coding,
        raw=octets.hex() if text is None or lossy or missing else None,
        received_at=max(p.received_at for p in ordered),
    )
    return Whole(message, len(ordered), ",".join(map(str, missing)) or None)


def number_keys(wholes: list[Whole]) -> list[NumberKey]:
    """The numbers the messages were sent to, as the numbers table holds them: whose owners to read."""
    return [NumberKey(n) for n in sorted({inbound.number_key(w.message.destination_addr) for w in wholes})]


def route(wholes: list[Whole], owners: list[Owner]) -> list[InboundRow]:
    """Each message as a row, with its owner (None: the operator's unrouted inbox), in the order given."""
    by_key = {(o.number, o.keyword): o.account_id for o in owners}
    rows = []
    for w in wholes:
        m = w.message
        to = inbound.number_key(m.destination_addr)
        account_id, keyword = inbound.owner(by_key, to, m.body)
        rows.append(InboundRow(m.carrier, m.source_addr, m.destination_addr, m.body, m.data_coding, m.raw,
                               m.received_at, account_id, keyword or None, to, inbound.number_key(m.source_addr),
                               w.segments, w.missing))  # fmt: skip
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
    return _encode(document(row_id, row.from_number, row.to_number, row.body, row.received_at, row.keyword,
                            row.segments, row.missing)).decode()  # fmt: skip


def stored_document(m: StoredInbound) -> dict[str, Any]:
    """A stored message as the API and the CLI list it: the fields of its callback."""
    return document(m.id, m.from_number or m.source_addr, m.to_number or m.destination_addr, m.body, m.received_at,
                    m.keyword, m.segments, m.missing)  # fmt: skip


def document(
    row_id: int,
    from_number: str,
    to_number: str,
    body: str | None,
    received_at: int,
    keyword: str | None,
    segments: int = 1,
    missing: str | None = None,
) -> dict[str, Any]:
    """The inbound callback of the contract (ARCHITECTURE.md §2, "Two-way messaging"): MobileNo (who sent it)
    and To (our number) in E.164 when valid, else as the carrier wrote them; Segments the parts the message was
    joined from, and MissingParts the places of those that never came (the time limit ran out; empty when it is
    whole); Message is "" when its data_coding is not one we decode."""
    return {
        "ID": str(row_id),
        "MobileNo": from_number,
        "To": to_number,
        "Message": body or "",
        "DateTime": format_time(received_at),
        "Segments": segments,
        "MissingParts": [int(n) for n in missing.split(",")] if missing else [],
        "Keyword": keyword or "",
    }
