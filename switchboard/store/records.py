"""What goes into and comes out of a store: plain records, no behaviour."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from switchboard.domain.statuses import CallReason, CallStatus, SmsStatus


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    sms_callback_url: str | None
    voice_callback_url: str | None
    webhook_secret: str
    created_at: int
    previous_webhook_secret: str | None = None
    """Still signs callbacks for `signing.ROTATION_GRACE_MS` after `secret_rotated_at`."""
    secret_rotated_at: int | None = None
    sms_callback_disabled: str | None = None
    """Why the SMS callback URL is not used any more (it answered 410), until it is set again."""
    voice_callback_disabled: str | None = None
    inbound_callback_url: str | None = None
    """Where the account's inbound messages are POSTed (ARCHITECTURE.md §2, "Two-way messaging")."""
    inbound_callback_disabled: str | None = None


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
    """The first part's reference, for a long message sent in several parts."""
    retry_at: int | None = None
    part_refs: tuple[str, ...] = ()
    """Every part's reference, in part order, when it was sent in more than one part (Sent only): each
    part is tracked (destination_parts) and the destination is final once every part is."""


class Receipt(NamedTuple):
    """A carrier's report on a message it accepted, found by its reference."""

    carrier: str
    carrier_ref: str
    status: SmsStatus
    error: str | None = None


class HeldReceipts(NamedTuple):
    """What `Store.retry_held_receipts` did with the receipts held because they matched nothing when they came."""

    applied: int
    """Held receipts that matched now and were applied."""
    dropped: list[Receipt]
    """Held receipts that still matched nothing and were received before `drop_before`: deleted."""
    remaining: int
    """Held receipts left for a later try."""


class MessageCancel(NamedTuple):
    """What `Store.cancel_message` did."""

    cancelled: int
    """Scheduled destinations no worker had taken yet: Cancelled now."""
    destinations: list[tuple[str, SmsStatus]]
    """Every destination it looked at (all, or those to the number asked for), as written and as it is now."""


class InboundMessage(NamedTuple):
    """A mobile-originated message a carrier handed over (a handset writing to one of our numbers)."""

    carrier: str
    source_addr: str
    """The handset's number, as the carrier wrote it."""
    destination_addr: str
    """Ours, as the carrier wrote it."""
    body: str | None
    """The decoded text; None when its data_coding is not one we decode (`raw` has the octets)."""
    data_coding: int
    raw: str | None
    """The message octets as received, hex: when `body` is None or lossy (broken UTF-16 read with U+FFFD), or
    when they begin with a user data header (one part of a concatenated message, the header saying which);
    else None."""
    received_at: int
    reference: int | None = None
    """A part of a concatenated message: the message's reference (8- or 16-bit, from the user data header,
    `domain.concat`); None for a message of its own."""
    total: int = 1
    """How many parts the message has (1 for a message of its own)."""
    seq: int = 1
    """This part's place, from 1."""


@dataclass(frozen=True, slots=True)
class StoredInbound:
    """An inbound message as stored, with the id the store gave it (ids grow in the order stored)."""

    id: int
    carrier: str
    source_addr: str
    destination_addr: str
    body: str | None
    data_coding: int
    raw: str | None
    received_at: int
    account_id: int | None = None
    """The account whose number (and keyword) it was sent to; None: in the operator's unrouted inbox."""
    keyword: str | None = None
    """The keyword that routed it to the account (upper case); None when the number as a whole did."""
    to_number: str | None = None
    """`destination_addr` in E.164 when it is a valid international number, else as written (a short code)."""
    from_number: str | None = None
    """`source_addr` the same way."""
    segments: int = 1
    """The parts it was joined from (the parts that came, when some never did)."""
    missing: str | None = None
    """The parts that never came, e.g. "2,3" (stored after the time limit as what came); None when whole."""


@dataclass(frozen=True, slots=True)
class AssignedNumber:
    """One of our numbers (and optionally a keyword on it) assigned to an account by the operator."""

    number: str
    """E.164 when it is a valid international number, else as written (a short code)."""
    keyword: str
    """Upper case; "" when the number as a whole is assigned."""
    account_id: int
    account_name: str
    created_at: int


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


class CallbackEvent(NamedTuple):
    """A callback to send, written to the outbox with the status change that caused it."""

    account_id: int
    kind: str
    """"sms" or "voice": which of the account's URLs it goes to (unless `url` is given)."""
    subject_id: int
    """The destination or call it is about; its events go out in `sequence` order."""
    sequence: int
    url: str | None
    """The request's own URL; None: the account's URL of this kind, read at each attempt."""
    body: str
    created_at: int
    first: bool
    """The first of this subject's events in one write: only it may be due at once (later ones wait for it)."""


class CallbackState(enum.StrEnum):
    PENDING = "pending"
    """Waiting for its next attempt, or for the subject's earlier event to be done."""
    DELIVERED = "delivered"
    """A 2xx came back."""
    FAILED = "failed"
    """Given up: every retry failed, the URL answered 410, or there was no URL to send to. Replayable."""
    CANCELLED = "cancelled"
    """Stopped through the API or the CLI before it was delivered (a URL typed by mistake). Replayable."""


@dataclass(frozen=True, slots=True)
class ClaimedCallback:
    """A callback handed to the dispatcher until its lease runs out."""

    id: int
    attempt: int
    """The claim's token (the attempts made so far, this one included)."""
    account_id: int
    kind: str
    subject_id: int
    sequence: int
    url: str | None
    """Where to post: the request's URL or the account's; None when the account has none."""
    from_account: bool
    """`url` is the account's (a 410 then disables it on the account)."""
    disabled: str | None
    """The account's URL was disabled (after a 410), and why."""
    body: str
    secret: str
    previous_secret: str | None
    secret_rotated_at: int | None


class CallbackResult(NamedTuple):
    """What became of one attempt, as the dispatcher decided it."""

    callback_id: int
    attempt: int
    state: CallbackState
    """PENDING with `retry_at`: try again then."""
    at: int
    url: str | None
    status_code: int | None
    latency_ms: int
    error: str | None
    retry_at: int | None = None
    disable: str | None = None
    """Disable the account's URL of this kind, with this reason (it answered 410)."""
    account_id: int = 0
    kind: str = ""
    deferred: bool = False
    """Not attempted (its host had too much in flight): due again at `retry_at`, the attempt not counted."""


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    at: int
    url: str | None
    status_code: int | None
    latency_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class CallbackView:
    id: int
    account_id: int
    kind: str
    subject_id: int
    sequence: int
    url: str | None
    body: str
    state: CallbackState
    due_at: int | None
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: int
    updated_at: int
    history: list[CallbackAttempt]


# Voice: a Call request (`call_requests`) and one call per destination (`calls`), queued like SMS.


@dataclass(slots=True)
class NewCallRequest:
    id: int
    account_id: int
    reference_id: str | None
    sender: str
    """The caller number shown to the called party, as the client wrote it."""
    message: str | None
    """Text to speak in `locale`; None when `campaign_id` is given."""
    locale: str | None
    """Canonical BCP-47 (`voice.tts.normalize_locale`)."""
    campaign_id: str | None
    callback: str
    """`domain.sms_request.CallbackMode` value: "yes" (the account's voice URL, the default), "no", "url"."""
    callback_url: str | None
    ring_timeout: int
    """Seconds to ring before giving up (CANCEL): NoAnswer / Timeout."""
    destination_count: int
    created_at: int
    idempotency_key: str | None


class NewCall(NamedTuple):
    """One call of a new request; its id is `request.id + 1 + position`, like an SMS destination's."""

    mobile_no: str
    """As the client wrote it."""
    e164: str | None
    """None when it is not a valid number: the call is stored Failed / General Error, with its record."""
    guid: str
    """The call's GUID in its call record (the vendor's CDR "GUID")."""


@dataclass(frozen=True, slots=True)
class CallView:
    id: int
    position: int
    guid: str
    mobile_no: str
    status: CallStatus
    reason: str
    """A `CallReason` value once final; "" while the call is under way."""
    call_time: int | None
    """When it was dialled (the INVITE went out); None if it never was."""
    answer_time: int | None
    end_time: int | None
    duration: int
    """Whole seconds from answer to hang-up; 0 when not answered."""
    trunk: str | None
    detail: str | None
    """What the trunk said, for people: "SIP 486 Busy Here", "no route", ... (not part of the record)."""
    updated_at: int


@dataclass(frozen=True, slots=True)
class CallRequestView:
    id: int
    account_id: int
    reference_id: str | None
    sender: str
    message: str | None
    locale: str | None
    campaign_id: str | None
    created_at: int
    calls: list[CallView]


@dataclass(frozen=True, slots=True)
class ClaimedCall:
    """A call handed to one dialer. Status Received: dial it. Dialing or InProgress: its dialer stopped
    without ending it (the lease ran out), so it is ended as Failed / General Error, never dialled twice."""

    id: int
    attempt: int
    """The claim's token: a change is applied only while no later claim has been made."""
    status: CallStatus
    request_id: int
    account_id: int
    account_name: str
    guid: str
    mobile_no: str
    e164: str | None
    sender: str
    message: str | None
    locale: str | None
    campaign_id: str | None
    ring_timeout: int
    call_time: int | None = None
    """When it was dialled, for a call found abandoned (None for a queued one)."""
    answer_time: int | None = None
    """When it was answered, for a call found abandoned after its answer."""


class CallProgress(NamedTuple):
    """A claimed call moved on: Dialing (the INVITE is out) or InProgress (answered)."""

    call_id: int
    attempt: int
    status: CallStatus
    at: int
    """call_time for Dialing, answer_time for InProgress."""
    trunk: str
    lease_until: int
    """When the call is taken as abandoned if it has not ended by then (its dialer died)."""


class CallEnd(NamedTuple):
    """How a claimed call ended; written with its call record (a voice callback) in one transaction."""

    call_id: int
    attempt: int
    status: CallStatus
    reason: CallReason
    end_time: int
    call_time: int | None = None
    """Set when known here (a call that never reached Dialing has none)."""
    answer_time: int | None = None
    trunk: str | None = None
    detail: str | None = None


class CancelResult(NamedTuple):
    ended: int
    """Calls that had not been dialled yet: ended now as Failed / Cancel."""
    stopping: int
    """Calls under way: their dialer was asked to hang up (they end as Failed / Cancel)."""
    finished: int
    """Calls that had already ended: left as they were."""


@dataclass(frozen=True, slots=True)
class Campaign:
    """A recording to play: an uploaded WAV, or text in a locale rendered once (8 kHz 16-bit mono PCM)."""

    id: str
    """A GUID (the API's CampaignID)."""
    account_id: int
    name: str
    source: str
    """"wav" or "tts"."""
    text: str | None
    locale: str | None
    duration_ms: int
    created_at: int


@dataclass(frozen=True, slots=True)
class AccountLimits:
    """What the operator set for one account (`switchboard accounts limits`); None: the default ([limits]
    for the rate and burst; no daily cap; every country)."""

    account_id: int
    requests_per_second: float | None = None
    burst: int | None = None
    destinations_per_day: int | None = None
    countries: str | None = None
    """ISO 3166 alpha-2 codes, comma-separated ("US,CA"): the only countries a destination may be in."""


class Lease(NamedTuple):
    """What `Store.lease_rate` or `Store.lease_daily` handed out: `granted` of the asked amount, and what is
    left after it (tokens in the shared bucket; or destinations counted today)."""

    granted: float
    left: float


class OptOut(NamedTuple):
    """A number on an account's opt-out list (ARCHITECTURE.md §2, "Two-way messaging": Opt-out)."""

    number: str
    """E.164 when valid, else as written without separators (`domain.inbound.number_key`)."""
    source: str
    """"keyword" (the handset wrote STOP) or "api" (POST /api/OptOuts)."""
    created_at: int


class PendingReply(NamedTuple):
    """A reply to a keyword waiting in the outbox to be made a Send of its account."""

    id: int
    account_id: int
    sender: str
    """Our number that received the keyword: the reply comes from it."""
    mobile_no: str
    body: str
    created_at: int
