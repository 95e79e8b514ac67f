"""Opt-out keywords as inbound messages are stored (ARCHITECTURE.md §2, "Two-way messaging": Opt-out): which
routed messages change their account's list, and the replies they ask for, written to the `opt_out_replies`
outbox in the same transaction (a STOP acknowledged to the SMSC is a STOP recorded, and a reply that will be
sent). The decisions, no SQL; `operations.apply_keywords` reads and writes.
"""

from __future__ import annotations

from typing import NamedTuple

from switchboard.domain import optout
from switchboard.store.inbound import InboundRow

KEYWORD = "keyword"
API = "api"
"""How a number came onto the list (`opt_outs.source`)."""


class KeywordRow(NamedTuple):
    """A routed inbound message whose whole text is a keyword."""

    account_id: int
    kind: optout.Keyword
    mobile_no: str
    """The sender, in the form numbers are compared in (`domain.inbound.number_key`)."""
    to_number: str
    """Ours: the reply is sent from it."""
    received_at: int


class ReplyTexts(NamedTuple):
    """An account's name and its own reply texts (None: the default; "": none)."""

    account_id: int
    name: str
    opt_out_reply: str | None
    opt_in_reply: str | None
    help_reply: str | None


class NewReply(NamedTuple):
    """An `opt_out_replies` row as inserted: a Send the reply sender makes of it (optouts.py)."""

    account_id: int
    sender: str
    mobile_no: str
    body: str
    created_at: int


def keywords(rows: list[InboundRow]) -> list[KeywordRow]:
    """The routed rows that are keywords, in the order they came (a STOP then a START: subscribed)."""
    found = []
    for r in rows:
        if r.account_id is None:
            continue
        kind = optout.keyword(r.body)
        if kind is not None:
            found.append(KeywordRow(r.account_id, kind, r.from_number, r.to_number, r.received_at))
    return found


def reply(k: KeywordRow, texts: ReplyTexts | None) -> NewReply | None:
    """The reply a keyword asks for; None when the account set "" for it (or is gone)."""
    if texts is None:
        return None
    body = optout.reply(k.kind, texts.name, (texts.opt_out_reply, texts.opt_in_reply, texts.help_reply))
    return NewReply(k.account_id, k.to_number, k.mobile_no, body, k.received_at) if body else None
