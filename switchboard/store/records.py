"""What goes into and comes out of a store: plain records, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from switchboard.domain.statuses import SmsStatus


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    sms_callback_url: str | None
    voice_callback_url: str | None
    webhook_secret: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    account_id: int
    digest: str
    """SHA-256 of the key, hex; the key itself is never stored."""
    prefix: str
    """The first characters of the key, to tell keys apart in listings."""
    label: str | None
    created_at: int
    revoked_at: int | None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 1.5 µs more, once per Send
class NewMessage:
    id: int
    account_id: int
    reference_id: str | None
    sender: str
    body: str
    encoding: str
    segments: int
    callback: str
    """`domain.sms_request.CallbackMode`: "no", "yes" (the account's URL) or "url" (`callback_url`)."""
    callback_url: str | None
    destination_count: int
    created_at: int
    schedule_at: int | None
    expires_at: int | None
    idempotency_key: str | None
    status: str
    """What its destinations start as: Received, or Scheduled (not a column of messages)."""
    due_at: int | None
    """When its destinations are first due for a worker (not a column of messages)."""


class NewDestination(NamedTuple):
    """One destination of a new message; its id is `message.id + 1 + position` (see `Store.accept`)."""

    mobile_no: str
    """As the client wrote it."""
    e164: str | None
    """None when it is not a valid number: an error log entry then says why."""


class NewErrorLog(NamedTuple):
    id: int
    account_id: int
    destination_id: int
    code: str
    text: str
    at: int


@dataclass(frozen=True, slots=True)
class DestinationView:
    id: int
    position: int
    mobile_no: str
    e164: str | None
    status: SmsStatus
    error: str | None
    error_log_id: int | None
    updated_at: int
    delivered_at: int | None
    carrier: str | None
    sequence: int


@dataclass(frozen=True, slots=True)
class MessageView:
    id: int
    account_id: int
    reference_id: str | None
    sender: str
    body: str
    encoding: str
    segments: int
    created_at: int
    schedule_at: int | None
    expires_at: int | None
    destinations: list[DestinationView]


@dataclass(frozen=True, slots=True)
class ClaimedDestination:
    """A destination handed to one worker until its lease runs out."""

    id: int
    attempt: int
    """The claim's token: a result is applied only while no later claim has been made."""
    status: SmsStatus
    e164: str | None
    mobile_no: str
    message_id: int
    account_id: int
    account_name: str
    sender: str
    body: str
    encoding: str
    expires_at: int | None


class Outcome(NamedTuple):
    """What became of a claimed destination."""

    destination_id: int
    attempt: int
    status: SmsStatus | None
    """The new status; None to try again at `retry_at` in the current status."""
    error: str | None = None
    carrier: str | None = None
    carrier_ref: str | None = None
    retry_at: int | None = None


class Receipt(NamedTuple):
    """A carrier's report on a message it accepted, found by its reference."""

    carrier: str
    carrier_ref: str
    status: SmsStatus
    error: str | None = None


class InFlight(NamedTuple):
    """A destination a carrier accepted and has not reported on yet."""

    destination_id: int
    carrier_ref: str
    e164: str
    sent_at: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    status: str
    at: int
    detail: str | None
