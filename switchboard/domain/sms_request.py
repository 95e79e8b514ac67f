"""Checking a Send SMS body (ARCHITECTURE.md §2, "Send SMS") and turning it into a `SendRequest`.

`validate_send` takes what `lenient_json.parse_body` returned and answers either a `SendRequest` or the
first `SmsError` in the contract's order; it never raises for bad input. Keys are matched in any letter
case ("destination", "MESSAGE"); when a body holds the same key twice in different cases, the last one
written wins.

Destinations are kept as the client wrote them (numbers are not normalised here: the caller runs
`numbers.normalize` on each, and stores one that is not a valid international number as Failed,
"International Number Invalid"). `Destination` may be a list of ``{"MobileNo": ...}`` objects (the key
in any case), a list of numbers, a mix of both, one such object, or one number; a number may be a JSON
string or a JSON integer. A list element that is neither (null, a nested list, an object without
MobileNo, a boolean, a fraction) is kept as an entry with an empty number, to be stored as Failed; a
Destination with no number in it at all is error 121.

Decisions where the vendor document is silent:

- Message: "characters" are Unicode code points, so an emoji counts one; blank counts as empty.
- Sender: surrounding spaces are removed; letters are ASCII letters (a sender id is sent in GSM).
- CallBack: also the strings "true" and "false" (any case); an empty string is the same as absent. A URL
  must have a host and no spaces; whether plain http is allowed is decided later, by configuration.
- ScheduleAt: ``2024-05-01T10:00:00+02:00`` (ISO 8601 with "T" needs an offset, "Z" included), or
  ``2024-05-01 10:00:00[.fff]`` (a space: UTC unless an offset follows); seconds are optional. At most
  `MAX_SCHEDULE_AHEAD` ahead. A time not after `now` means "send now" and gives `schedule_at=None`.
- ValidityPeriod: a JSON integer or a string of digits; a fraction is refused.
- ReferenceID: optional, echoed as written. A string of up to 255 characters, or a JSON number (written
  back in Python's shortest form); empty means none. A longer string, or an object, list or boolean, is
  error 120 (Invalid Json), checked first with the other "is this a usable body" checks, since the
  catalogue has no id of its own for it and truncating would break clients matching on it.

The field readers (`read_destinations`, `read_sender`, `read_callback`, `read_reference_id`) answer
neutral values (None, `INVALID`, or the error the caller passes), so `voice_request` reads a Call body's
fields exactly as a Send's.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar
from urllib.parse import urlsplit

from switchboard.domain.catalogue import SmsError
from switchboard.domain.encoding import Encoding, measure

__all__ = [
    "MAX_DESTINATIONS",
    "MAX_MESSAGE_CHARS",
    "MAX_REFERENCE_ID_CHARS",
    "MAX_SCHEDULE_AHEAD",
    "MAX_URL_CHARS",
    "MAX_VALIDITY_SECONDS",
    "MIN_VALIDITY_SECONDS",
    "Callback",
    "CallbackMode",
    "Invalid",
    "SendRequest",
    "SmsError",
    "is_json_int",
    "read_callback",
    "read_destinations",
    "read_reference_id",
    "read_sender",
    "validate_send",
]

MAX_DESTINATIONS = 1000
"""Most destinations in one request (error 124)."""
MAX_MESSAGE_CHARS = 1000
"""Longest Message, in characters (error 123)."""
MAX_REFERENCE_ID_CHARS = 255
"""Longest ReferenceID kept (longer: error 120)."""
MAX_SCHEDULE_AHEAD = timedelta(days=366)
"""How far ahead ScheduleAt may be: a year, leap day included (further: error 132)."""
MIN_VALIDITY_SECONDS = 60
"""Shortest ValidityPeriod (error 133 below it)."""
MAX_VALIDITY_SECONDS = 7 * 24 * 3600
"""Longest ValidityPeriod, 7 days (error 133 above it)."""
MAX_URL_CHARS = 2048
"""Longest CallBack URL."""

_ALPHANUMERIC_SENDER = re.compile(r"(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9 ._-]{1,11}")
_NUMERIC_SENDER = re.compile(r"\+?[0-9]{1,15}")
_SCHEDULE = re.compile(
    r"""([0-9]{4})-([0-9]{2})-([0-9]{2})
        (?:[Tt]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(?=[-+Zz])
          |[ ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?)
        ([Zz]|([-+])([0-9]{2}):?([0-9]{2}))?""",
    re.VERBOSE,
)
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
E = TypeVar("E")
# Integers are written out with str(), which is slow for huge ones and refuses past 4,300 digits
# (sys.int_info); nothing this long is a phone number, a sender or a reference anyway.
_LONGEST_INT = 10**40


class CallbackMode(enum.StrEnum):
    """Whether and where status changes of this request are posted (a str: "no", "yes", "url")."""

    NO = "no"
    """No callbacks (the default)."""
    YES = "yes"
    """To the account's SMS callback URL."""
    URL = "url"
    """To the URL given in the request (extension)."""


@dataclass(frozen=True, slots=True)
class Callback:
    """The request's CallBack: a mode, and the URL when the mode is URL."""

    mode: CallbackMode
    url: str | None = None


CALLBACK_NO = Callback(CallbackMode.NO)
CALLBACK_YES = Callback(CallbackMode.YES)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A Send SMS body that passed every check."""

    destinations: list[str]
    """Numbers as the client wrote them (integers as decimal strings); "" for an entry with no number."""
    message: str
    sender: str
    reference_id: str | None
    callback: Callback
    schedule_at: datetime | None
    """When to send, aware and in UTC; None: now."""
    validity_period: int | None
    """Seconds after which an undelivered message expires; None: the carrier's default."""
    encoding: Encoding
    segments: int
    """How many SMS the message is sent as, to each destination."""


class Invalid:
    """Marks a present but unusable value (distinct from None, "absent")."""


INVALID = Invalid()


def validate_send(doc: object, *, now: datetime) -> SendRequest | SmsError:
    """Check a decoded Send SMS body; the first failure in the contract's order, or the request.

    `now` (aware; a naive one is taken as UTC) is the clock reading ScheduleAt is judged against.
    """
    if not isinstance(doc, dict):
        return SmsError.INVALID_JSON
    try:
        fields: dict[object, object] = {key.lower(): value for key, value in doc.items()}
    except AttributeError:  # a key that is not a string: not from JSON, but never an exception
        fields = {key.lower() if isinstance(key, str) else key: value for key, value in doc.items()}

    reference_id = read_reference_id(fields.get("referenceid"))
    if isinstance(reference_id, Invalid):
        return SmsError.INVALID_JSON

    destinations = read_destinations(
        fields.get("destination"),
        missing=SmsError.DESTINATION_MISSING,
        too_many=SmsError.TOO_MANY_DESTINATIONS,
    )
    if isinstance(destinations, SmsError):
        return destinations

    message = fields.get("message")
    if not isinstance(message, str) or not message or message.isspace():
        return SmsError.MESSAGE_MISSING
    if len(message) > MAX_MESSAGE_CHARS:
        return SmsError.MESSAGE_TOO_LONG

    sender = read_sender(fields.get("sender"))
    if sender is None:
        return SmsError.SENDER_MISSING
    if isinstance(sender, Invalid):
        return SmsError.SENDER_INVALID

    callback = read_callback(fields.get("callback"))
    if callback is None:
        return SmsError.CALLBACK_INVALID

    schedule_at = _schedule_at(fields.get("scheduleat"), now)
    if isinstance(schedule_at, Invalid):
        return SmsError.SCHEDULE_INVALID

    validity_period = _validity(fields.get("validityperiod"))
    if isinstance(validity_period, Invalid):
        return SmsError.VALIDITY_INVALID

    encoding, segments = measure(message)
    return SendRequest(
        destinations=destinations,
        message=message,
        sender=sender,
        reference_id=reference_id,
        callback=callback,
        schedule_at=schedule_at,
        validity_period=validity_period,
        encoding=encoding,
        segments=segments,
    )


def is_json_int(value: object) -> bool:
    """A JSON integer (bool is an int to Python, not to JSON), small enough for str()."""
    return isinstance(value, int) and not isinstance(value, bool) and -_LONGEST_INT < value < _LONGEST_INT


def read_destinations(value: object, *, missing: E, too_many: E) -> list[str] | E:
    """The numbers as written, or `missing` (no number at all) or `too_many` (over `MAX_DESTINATIONS`)."""
    if isinstance(value, list):
        if len(value) > MAX_DESTINATIONS:  # too many, unless no entry has a number (missing comes first)
            has_number = any(_filled(_number(item)) for item in value)
            return too_many if has_number else missing
        numbers = [_number(item) for item in value]
        for number in numbers:  # a plain loop: any() with a generator costs more for short lists
            if number and not number.isspace():
                return numbers
        return missing
    number = _number(value)
    return [number] if _filled(number) else missing


def _filled(number: str) -> bool:
    # An entry of spaces only is kept as written, but does not make the Destination non-empty.
    return bool(number) and not number.isspace()


def _number(item: object) -> str:
    """One destination entry as written: a string, an integer, or {"MobileNo": either}; else ""."""
    if isinstance(item, dict):
        mobile = item.get("MobileNo", INVALID)
        item = _get_folded(item, "mobileno") if mobile is INVALID else mobile
    if isinstance(item, str):
        return item
    if is_json_int(item):
        return str(item)
    return ""


def _get_folded(mapping: dict[object, object], lower_key: str) -> object:
    """The value of the last key that is `lower_key` in some letter case, None when there is none."""
    found = None
    for key, value in mapping.items():
        if isinstance(key, str) and key.lower() == lower_key:
            found = value
    return found


def read_sender(value: object, *, numeric_only: bool = False) -> str | Invalid | None:
    """The sender, stripped; None when missing or empty (125), INVALID when unusable (126). With
    `numeric_only` (a caller number) only a number of up to 15 digits, with an optional "+", is usable."""
    if value is None:
        return None
    if is_json_int(value):
        value = str(value)  # a number given as a JSON integer; a negative one fails below
    if not isinstance(value, str):
        return INVALID
    sender = value.strip()
    if not sender:
        return None
    if len(sender) <= 16 and (
        _NUMERIC_SENDER.fullmatch(sender) or (not numeric_only and _ALPHANUMERIC_SENDER.fullmatch(sender))
    ):
        return sender
    return INVALID


def read_callback(value: object) -> Callback | None:
    """The CallBack, or None when it is not one (error 127)."""
    if value is None or value is False or value == "":
        return CALLBACK_NO
    if value is True:
        return CALLBACK_YES
    if not isinstance(value, str):
        return None
    word = value.strip().lower()
    if word in ("yes", "true"):
        return CALLBACK_YES
    if word in ("no", "false"):
        return CALLBACK_NO
    if word.startswith(("https://", "http://")):
        url = value.strip()
        if len(url) <= MAX_URL_CHARS and _URL_FORBIDDEN.search(url) is None:
            try:
                host = urlsplit(url).hostname
            except ValueError:  # e.g. an unclosed "[" of an IPv6 address
                return None
            if host:
                return Callback(CallbackMode.URL, url)
    return None


def _schedule_at(value: object, now: datetime) -> datetime | Invalid | None:
    """ScheduleAt in UTC; None when absent or not after `now` (send now); INVALID for error 132."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return INVALID
    match = _SCHEDULE.fullmatch(value.strip())
    if match is None:
        return INVALID
    year, month, day, zone = match.group(1, 2, 3, 12)
    hour, minute, second, fraction = match.group(4, 5, 6, 7) if match.group(4) else match.group(8, 9, 10, 11)
    sign, zone_hours, zone_minutes = match.group(13, 14, 15)
    try:
        zone_info = UTC
        if zone is not None and sign is not None:
            offset = timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
            zone_info = timezone(-offset if sign == "-" else offset)
        when = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "")[:6].ljust(6, "0")),
            tzinfo=zone_info,
        ).astimezone(UTC)
    except (ValueError, OverflowError):  # 2024-02-30, 25:00, an offset of a day or more, past year 9999
        return INVALID
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if when <= now:
        return None
    if when - now > MAX_SCHEDULE_AHEAD:
        return INVALID
    return when


def _validity(value: object) -> int | Invalid | None:
    """ValidityPeriod in seconds; None when absent; INVALID for error 133."""
    if value is None or value == "":
        return None
    if is_json_int(value):
        assert isinstance(value, int)  # for mypy: _is_int checked it
        seconds = value
    elif isinstance(value, str) and value.strip().isdigit() and value.isascii() and len(value) <= 20:
        seconds = int(value)
    else:
        return INVALID
    return seconds if MIN_VALIDITY_SECONDS <= seconds <= MAX_VALIDITY_SECONDS else INVALID


def read_reference_id(value: object) -> str | Invalid | None:
    """ReferenceID as a string; None when absent or empty; INVALID for error 120."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value if len(value) <= MAX_REFERENCE_ID_CHARS else INVALID
    if is_json_int(value):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return INVALID
