"""Checking a Voice Call body (ARCHITECTURE.md §2, "Voice call") and turning it into a `CallRequest`.

`validate_call` takes what `lenient_json.parse_body` returned and answers either a `CallRequest` or the first
`VoiceError` in the contract's order; it never raises for bad input. Keys are matched in any letter case.
Destination, Sender, CallBack and ReferenceID are read by the same readers as a Send SMS body
(`sms_request`), so the two APIs agree on what a number or a URL is. The order:

    5001 not an object, or an unusable ReferenceID
    5000 Destination missing · 5005 too many destinations
    5000 Sender missing · 5009 Sender invalid
    5003 both Message and CampaignID · 5000 neither
    5010 Message too long · 5000 Locale missing (a Message without one) · 5004 Locale not supported
    5011 CallBack invalid · 5012 RingTimeout invalid

5002 (Invalid Campaign) and 5007 (rate) need the store and the limiter: the API checks them after this, in
that order. A CampaignID that is not GUID-shaped is kept as `NOT_A_GUID`, which no campaign has, so it is
5002 in its place in the order, not earlier.

Decisions where the vendor document is silent:

- Sender: the caller number shown, so a number only: digits with an optional leading "+", at most 15
  (E.164 §6.1); a JSON integer is read as its digits. Anything else is 5009.
- Message and CampaignID: "given" means present and not empty or blank. A Message that is not a string (a
  number, a list) is not a usable message: alone it is 5000 (neither), with a CampaignID it is 5003.
  Characters are Unicode code points, as for SMS.
- Locale: matched through `locale_of` (case and "_" tolerant); one that is not a string is 5004. With a
  CampaignID the Locale is ignored: the recording has its own language.
- CampaignID: a GUID, ``fc46b682-b939-4fc2-81c3-891cfb23cd92``, in any letter case, optionally in braces
  (.NET writes ``{FC46B682-...}``); kept in the canonical lower-case form.
- CallBack: absent (or empty) means call records go to the account's voice URL (the vendor's voice
  requests carry none); "No" or false turns them off; "Yes" or true is the default said aloud; a URL
  overrides. Whether the URL may be used is checked by the API (egress rules), also as 5011.
- RingTimeout: whole seconds from 5 to 120, a JSON integer or a string of digits; absent, null or empty is
  the default, 30. A fraction is refused (as SMS's ValidityPeriod).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from switchboard.domain.catalogue import VoiceError
from switchboard.domain.sms_request import (
    CALLBACK_YES,
    Callback,
    Invalid,
    is_json_int,
    read_callback,
    read_destinations,
    read_reference_id,
    read_sender,
)

__all__ = [
    "DEFAULT_RING_TIMEOUT",
    "MAX_MESSAGE_CHARS",
    "MAX_RING_TIMEOUT",
    "MIN_RING_TIMEOUT",
    "NOT_A_GUID",
    "CallRequest",
    "VoiceError",
    "campaign_guid",
    "validate_call",
]

DEFAULT_RING_TIMEOUT = 30
"""Seconds a call rings before it is given up (NoAnswer / Timeout) when the request says nothing."""
MIN_RING_TIMEOUT = 5
"""Shortest RingTimeout (error 5012 below it): less does not reach a phone in a pocket."""
MAX_RING_TIMEOUT = 120
"""Longest RingTimeout (error 5012 above it); carriers end an unanswered call by then anyway."""
MAX_MESSAGE_CHARS = 2000
"""Longest Message, in characters (error 5010): a few minutes of speech."""
NOT_A_GUID = "not-a-guid"
"""`CallRequest.campaign_id` for a CampaignID that is not a GUID: no campaign has it (error 5002)."""

_GUID = re.compile(r"(\{)?([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})(?(1)\})")


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A Call body that passed every check that needs no store (the campaign is checked by the service)."""

    destinations: list[str]
    """Numbers as the client wrote them (integers as decimal strings); "" for an entry with no number."""
    sender: str
    """The caller number to show."""
    message: str | None
    """Text to speak; None when `campaign_id` is given."""
    locale: str | None
    """Canonical BCP-47 locale of `message` (one the text-to-speech engine speaks); None with a campaign."""
    campaign_id: str | None
    """Canonical lower-case GUID, or `NOT_A_GUID`; None when `message` is given."""
    reference_id: str | None
    callback: Callback
    """Where call records go: the account's voice URL unless the request says "No" or gives a URL."""
    ring_timeout: int = DEFAULT_RING_TIMEOUT


def campaign_guid(value: object) -> str | None:
    """`value` as a canonical CampaignID (lower-case GUID, no braces); None when it is not one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _GUID.fullmatch(value.strip())
    return None if match is None else match.group(2).lower()


def validate_call(doc: object, *, locale_of: Callable[[str], str | None]) -> CallRequest | VoiceError:
    """Check a decoded Call body; the first failure in the contract's order, or the request.

    `locale_of` answers the canonical form of a locale the text-to-speech engine speaks, None for others
    (`VoiceService.locale`).
    """
    if not isinstance(doc, dict):
        return VoiceError.INVALID_JSON
    fields = {key.lower() if isinstance(key, str) else key: value for key, value in doc.items()}

    reference_id = read_reference_id(fields.get("referenceid"))
    if isinstance(reference_id, Invalid):
        return VoiceError.INVALID_JSON

    destinations = read_destinations(
        fields.get("destination"),
        missing=VoiceError.DESTINATION_MISSING,
        too_many=VoiceError.TOO_MANY_DESTINATIONS,
    )
    if isinstance(destinations, VoiceError):
        return destinations

    sender = read_sender(fields.get("sender"), numeric_only=True)
    if sender is None:
        return VoiceError.SENDER_MISSING
    if isinstance(sender, Invalid):
        return VoiceError.SENDER_INVALID

    message_value = fields.get("message")
    campaign_value = fields.get("campaignid")
    has_message, has_campaign = _given(message_value), _given(campaign_value)
    if has_message and has_campaign:
        return VoiceError.BOTH_GIVEN
    message: str | None = None
    locale: str | None = None
    campaign_id: str | None = None
    if has_campaign:
        campaign_id = campaign_guid(campaign_value) or NOT_A_GUID
    elif not isinstance(message_value, str) or not has_message:
        return VoiceError.NEITHER_GIVEN
    else:
        message = message_value
        if len(message) > MAX_MESSAGE_CHARS:
            return VoiceError.MESSAGE_TOO_LONG
        locale_value = fields.get("locale")
        if not _given(locale_value):
            return VoiceError.LOCALE_MISSING
        locale = locale_of(locale_value.strip()) if isinstance(locale_value, str) else None
        if locale is None:
            return VoiceError.LOCALE_UNSUPPORTED

    callback_value = fields.get("callback")
    callback = CALLBACK_YES if callback_value is None or callback_value == "" else read_callback(callback_value)
    if callback is None:
        return VoiceError.CALLBACK_INVALID

    ring_timeout = _ring_timeout(fields.get("ringtimeout"))
    if ring_timeout is None:
        return VoiceError.RING_TIMEOUT_INVALID

    return CallRequest(
        destinations=destinations,
        sender=sender,
        message=message,
        locale=locale,
        campaign_id=campaign_id,
        reference_id=reference_id,
        callback=callback,
        ring_timeout=ring_timeout,
    )


def _given(value: object) -> bool:
    """Present, and not an empty or blank string."""
    return value is not None and not (isinstance(value, str) and (not value or value.isspace()))


def _ring_timeout(value: object) -> int | None:
    """RingTimeout in seconds, the default when absent; None for error 5012."""
    if value is None or value == "":
        return DEFAULT_RING_TIMEOUT
    if is_json_int(value):
        assert isinstance(value, int)  # for mypy: is_json_int checked it
        seconds = value
    elif isinstance(value, str) and value.strip().isdigit() and value.isascii() and len(value) <= 20:
        seconds = int(value)
    else:
        return None
    return seconds if MIN_RING_TIMEOUT <= seconds <= MAX_RING_TIMEOUT else None
