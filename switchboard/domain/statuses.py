"""SMS destination statuses and the transitions allowed between them (ARCHITECTURE.md §2 "SMS statuses")."""

from __future__ import annotations

import enum


class SmsStatus(enum.StrEnum):
    """The status of one destination of a Send request."""

    SCHEDULED = "Scheduled"
    """Stored with a `ScheduleAt` in the future; not yet due."""
    RECEIVED = "Received"
    """Stored durably and waiting for a worker."""
    SENT = "Sent"
    """A carrier accepted it; waiting for its delivery receipt."""
    DELIVERED = "Delivered"
    """The carrier reported delivery to the handset (every part, for a long message)."""
    UNDELIVERED = "Undelivered"
    """The carrier reported that it could not be delivered."""
    EXPIRED = "Expired"
    """The carrier gave up after the message's validity period."""
    REJECTED = "Rejected"
    """The carrier refused it: an error in the submit response or a REJECTD receipt."""
    FAILED = "Failed"
    """It never reached a carrier: bad number, no route, or validity ran out before sending."""
    CANCELLED = "Cancelled"
    """A scheduled send that was cancelled before it was due."""

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def rank(self) -> int:
        """How far along the way to the handset; GetStatus reports the least advanced of several."""
        return _RANK[self]


_TERMINAL = frozenset(
    {
        SmsStatus.DELIVERED,
        SmsStatus.UNDELIVERED,
        SmsStatus.EXPIRED,
        SmsStatus.REJECTED,
        SmsStatus.FAILED,
        SmsStatus.CANCELLED,
    }
)

_RANK = {
    SmsStatus.SCHEDULED: 0,
    SmsStatus.RECEIVED: 1,
    SmsStatus.SENT: 2,
    SmsStatus.FAILED: 3,
    SmsStatus.REJECTED: 3,
    SmsStatus.CANCELLED: 3,
    SmsStatus.EXPIRED: 3,
    SmsStatus.UNDELIVERED: 3,
    SmsStatus.DELIVERED: 4,
}

_ALLOWED: dict[SmsStatus, frozenset[SmsStatus]] = {
    SmsStatus.SCHEDULED: frozenset(
        {SmsStatus.RECEIVED, SmsStatus.SENT, SmsStatus.REJECTED, SmsStatus.FAILED, SmsStatus.CANCELLED}
    ),
    SmsStatus.RECEIVED: frozenset({SmsStatus.SENT, SmsStatus.REJECTED, SmsStatus.FAILED}),
    # Receipts find a destination by the carrier's reference, which it has only once it is Sent.
    SmsStatus.SENT: frozenset({SmsStatus.DELIVERED, SmsStatus.UNDELIVERED, SmsStatus.EXPIRED, SmsStatus.REJECTED}),
}


def can_transition(current: SmsStatus, new: SmsStatus) -> bool:
    """Whether `current` may change to `new`. Terminal statuses never change back."""
    return new in _ALLOWED.get(current, frozenset())


def least_advanced(statuses: list[SmsStatus]) -> SmsStatus:
    """The overall status of a request: Delivered only when all are, otherwise the least advanced."""
    return min(statuses, key=lambda s: s.rank)


def parts_status(parts: list[SmsStatus]) -> SmsStatus | None:
    """The status of a long message from its parts' statuses: None while any part is not final yet;
    Delivered when every part is; otherwise the worst final status among them: Rejected, then
    Undelivered, then Expired (a handset cannot show a message with a part missing)."""
    if not parts or any(not p.terminal for p in parts):
        return None
    for status in (SmsStatus.REJECTED, SmsStatus.UNDELIVERED, SmsStatus.EXPIRED):
        if status in parts:
            return status
    if all(p is SmsStatus.DELIVERED for p in parts):
        return SmsStatus.DELIVERED
    return SmsStatus.UNDELIVERED  # a final status receipts never carry (Failed, Cancelled): not delivered


class CallStatus(enum.StrEnum):
    """The status of one call (one destination of a Call request). The last four are the vendor's call
    statuses, each final with a `CallReason`; the first three are extensions, shown while a call is under
    way."""

    RECEIVED = "Received"
    """Stored durably and waiting for a dialer (and a free channel on its trunk)."""
    DIALING = "Dialing"
    """The trunk is ringing the number (an INVITE is out); not answered yet."""
    IN_PROGRESS = "InProgress"
    """Answered; the audio is playing."""
    ANSWERED = "Answered"
    """Answered, and ended: by us after the audio (reason NA) or by the called party (CallerHangUp)."""
    BUSY = "Busy"
    """The called party was busy (SIP 486 or 600)."""
    NO_ANSWER = "NoAnswer"
    """Nobody answered within the ring timeout, or the network said so (SIP 480, 408)."""
    FAILED = "Failed"
    """It could not be made: blocked, an error, or cancelled (see the reason)."""

    @property
    def terminal(self) -> bool:
        return self in _CALL_TERMINAL

    @property
    def rank(self) -> int:
        """How far along; GetStatus reports the least advanced of a request's calls."""
        return _CALL_RANK[self]


class CallReason(enum.StrEnum):
    """Why a call ended as it did (the vendor's "Reasons"); "" while it is under way."""

    NA = "NA"
    """Nothing to add: answered and played to the end, or busy."""
    TIMEOUT = "Timeout"
    """Not answered in time."""
    CALLER_HANG_UP = "CallerHangUp"
    """The called party hung up before the audio ended (the vendor's name for it)."""
    BLOCKED = "Blocked"
    """Refused by the network (SIP 403, 603, 607, 608) or by our own rules."""
    GENERAL_ERROR = "General Error"
    """Anything else: an invalid number, no route, a trunk error, no response, audio that could not be
    prepared, or a dialer that stopped in the middle of the call."""
    CANCEL = "Cancel"
    """Cancelled through the API before it ended."""


_CALL_TERMINAL = frozenset({CallStatus.ANSWERED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED})
_CALL_RANK = {
    CallStatus.RECEIVED: 0,
    CallStatus.DIALING: 1,
    CallStatus.IN_PROGRESS: 2,
    CallStatus.FAILED: 3,
    CallStatus.BUSY: 3,
    CallStatus.NO_ANSWER: 3,
    CallStatus.ANSWERED: 4,
}


def sip_outcome(status_code: int) -> tuple[CallStatus, CallReason]:
    """The contract's outcome of a call that ended with a SIP final response other than 2xx
    (ARCHITECTURE.md §2, "Calls and call records"); a 2xx is Answered, decided by who hung up."""
    if status_code in (486, 600):
        return CallStatus.BUSY, CallReason.NA
    if status_code in (480, 408, 487):
        # 487 (Request Terminated) answers our own CANCEL on ring timeout.
        return CallStatus.NO_ANSWER, CallReason.TIMEOUT
    if status_code in (403, 603, 607, 608):
        return CallStatus.FAILED, CallReason.BLOCKED
    return CallStatus.FAILED, CallReason.GENERAL_ERROR
