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
