"""The error catalogue of the public API (ARCHITECTURE.md §2).

Error ids and texts are part of the contract: clients match on them. The API writes an SMS error as
``{"Error ID": error.error_id, "Status": error.status}`` with HTTP status ``error.http_status``. The
order in which the Send SMS checks run is the order of the members below (after 128, which the API
checks before reading the body): the first failing check is the one reported.
"""

from __future__ import annotations

import enum

__all__ = ["DestinationError", "SmsError", "VoiceError"]


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


class VoiceError(enum.Enum):
    """Why a Call, a voice GetStatus or Cancel, or a campaign request was refused (vendor ids 5000-5007;
    5008 and up are extensions)."""

    error_id: str
    text: str
    http_status: int

    def __init__(self, error_id: str, text: str, http_status: int) -> None:
        self.error_id = error_id
        self.text = text
        self.http_status = http_status

    @property
    def message(self) -> str:
        """The response's "Message", e.g. "Received with error - Invalid Json"."""
        return f"Received with error - {self.text}"

    AUTHENTICATION_FAILED = ("5006", "Authentication failed", 401)
    """No credentials, an unknown account or key, or a revoked key."""
    BODY_TOO_LARGE = ("5008", "Request body too large", 413)
    """Extension: the body is over the limit (1 MiB for a Call, 20 MiB for a campaign upload)."""
    INVALID_JSON = ("5001", "Invalid Json", 400)
    """The body is not JSON even when read leniently, is not an object, or has an unusable ReferenceID."""
    DESTINATION_MISSING = ("5000", "Parameter Destination/Mobile No is missing or empty", 400)
    """No Destination, or one that holds no number at all."""
    TOO_MANY_DESTINATIONS = ("5005", "Too many destinations (at most 1000)", 400)
    """More than 1,000 destinations in one request."""
    SENDER_MISSING = ("5000", "Parameter Sender is missing or empty", 400)
    """No Sender, or an empty or blank one."""
    SENDER_INVALID = ("5009", "Parameter Sender is invalid", 400)
    """Extension: a Sender (the caller number shown) that is not a number of up to 15 digits."""
    BOTH_GIVEN = ("5003", "Message or CampaignID, either of the two should be present", 400)
    """Both Message and CampaignID were given."""
    NEITHER_GIVEN = ("5000", "Parameter Message or CampaignID is missing or empty", 400)
    """Neither Message nor CampaignID was given (or both are empty)."""
    MESSAGE_TOO_LONG = ("5010", "Parameter Message is too long", 400)
    """Extension: a Message of more than 2,000 characters (several minutes of speech)."""
    LOCALE_MISSING = ("5000", "Parameter Locale is missing or empty", 400)
    """A Message without a Locale."""
    LOCALE_UNSUPPORTED = ("5004", "Locale is not supported", 400)
    """A Locale the text-to-speech engine does not speak."""
    CAMPAIGN_INVALID = ("5002", "Invalid Campaign", 400)
    """A CampaignID that is unknown, deleted, or another account's."""
    CALLBACK_INVALID = ("5011", "Parameter CallBack is invalid", 400)
    """Extension: a CallBack that is not Yes, No, true, false or an http(s) URL (or a refused URL)."""
    RING_TIMEOUT_INVALID = ("5012", "Parameter RingTimeout is invalid", 400)
    """Extension: a RingTimeout that is not a whole number of seconds from 5 to 120."""
    RATE_LIMITED = ("5007", "Rate limit exceeded", 429)
    """The account sent more than its rate allows; the response carries Retry-After."""
    ID_NOT_FOUND = ("5013", "ID not found", 404)
    """Extension: GetStatus or Cancel of no such ID, or one that belongs to another account."""
    AUDIO_INVALID = ("5014", "Invalid audio", 400)
    """Extension: a campaign upload that is not a WAV file we can read (the message says why)."""
    UNAVAILABLE = ("5015", "Service temporarily unavailable", 503)
    """Extension: the request could not be stored or read now (the database is unreachable); nothing was
    accepted, and the same request may be sent again."""


class DestinationError(enum.Enum):
    """Why one destination of an accepted Send was stored Failed (the request itself succeeds): `text` is its
    "Error" in GetStatus and its callback, `code` the error log entry's (its ErrorLogsID points at it).
    Extensions; the vendor's own is "International Number Invalid" (sms/service.py)."""

    code: str
    text: str

    def __init__(self, code: str, text: str) -> None:
        self.code = code
        self.text = text

    COUNTRY_NOT_ALLOWED = ("country_not_allowed", "Destination country not allowed")
    """The number is in a country the account may not send to (`switchboard accounts limits --countries`),
    or in no single country (+800, +882, ...) while the account's countries are limited."""
    DAILY_LIMIT = ("daily_limit", "Daily destination limit reached")
    """The account has sent to as many destinations today (UTC) as its daily cap allows."""
    OPTED_OUT = ("opted_out", "Opted out")
    """The number is on the account's opt-out list: it wrote STOP to one of the account's numbers, or the account
    put it there (`POST /api/OptOuts`). START from the handset, or `DELETE /api/OptOuts/{MobileNo}`, takes it off."""
