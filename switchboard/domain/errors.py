"""The error catalogue of the public API (ARCHITECTURE.md §2).

Error ids and texts are part of the contract: clients match on them. The API writes an SMS error as
``{"Error ID": error.error_id, "Status": error.status}`` with HTTP status ``error.http_status``. The
order in which the Send SMS checks run is the order of the members below (after 128, which the API
checks before reading the body): the first failing check is the one reported.
"""

from __future__ import annotations

import enum

__all__ = ["SmsError"]


class SmsError(enum.Enum):
    """Why a Send SMS or SMS GetStatus request was refused (vendor ids 120-129 and 131; 130, 132, 133 and
    140 are extensions)."""

    error_id: str
    text: str
    http_status: int

    def __init__(self, error_id: str, text: str, http_status: int) -> None:
        self.error_id = error_id
        self.text = text
        self.http_status = http_status

    @property
    def status(self) -> str:
        """The response's "Status" text, e.g. "Received with error - Invalid Json"."""
        return f"Received with error - {self.text}"

    AUTHENTICATION_FAILED = ("128", "Authentication failed", 401)
    """No credentials, an unknown account or key, or a revoked key."""
    BODY_TOO_LARGE = ("130", "Request body too large (at most 1 MiB)", 413)
    """Extension: the body is over 1 MiB; it is refused before it is read."""
    INVALID_JSON = ("120", "Invalid Json", 400)
    """The body is not JSON even when read leniently, is not an object, or has an unusable ReferenceID."""
    DESTINATION_MISSING = ("121", "Parameter Destination/Mobile No is missing or empty", 400)
    """No Destination, or one that holds no number at all."""
    TOO_MANY_DESTINATIONS = ("124", "Too many destinations (at most 1000)", 400)
    """More than 1,000 destinations in one request."""
    MESSAGE_MISSING = ("122", "Parameter Message is missing or empty", 400)
    """No Message, an empty or blank one, or one that is not a string."""
    MESSAGE_TOO_LONG = ("123", "Parameter Message is too long", 400)
    """A Message of more than 1,000 characters."""
    SENDER_MISSING = ("125", "Parameter Sender is missing or empty", 400)
    """No Sender, or an empty or blank one."""
    SENDER_INVALID = ("126", "Parameter Sender is invalid", 400)
    """A Sender that is neither 1-11 letters, digits, spaces, '.', '-', '_' (one letter at least) nor a
    number of up to 15 digits."""
    CALLBACK_INVALID = ("127", "Parameter CallBack is invalid", 400)
    """A CallBack that is not Yes, No, true, false or an http(s) URL."""
    SCHEDULE_INVALID = ("132", "Parameter ScheduleAt is invalid", 400)
    """Extension: a ScheduleAt that is not a date and time, or is more than a year ahead."""
    VALIDITY_INVALID = ("133", "Parameter ValidityPeriod is invalid", 400)
    """Extension: a ValidityPeriod that is not a whole number of seconds from 60 to 604,800 (7 days)."""
    RATE_LIMITED = ("129", "Rate limit exceeded", 429)
    """The account sent more than its rate allows; the response carries Retry-After."""
    ID_NOT_FOUND = ("131", "ID not found", 404)
    """GetStatus: no such ID, or one that belongs to another account."""
    UNAVAILABLE = ("140", "Service temporarily unavailable", 503)
    """Extension: the request could not be stored or read now (the database is unreachable); nothing was
    accepted, and the same request may be sent again."""
