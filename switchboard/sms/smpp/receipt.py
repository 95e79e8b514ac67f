"""Delivery receipts: what an SMSC says, in a deliver_sm (or data_sm), about a message we submitted.

A receipt is told apart from a message sent by a handset by esm_class alone (§5.2.12: message type bits
5..2 = 0001 "SMSC Delivery Receipt", or 1000 "Intermediate Delivery Notification"). Never by its text: a
handset user could otherwise fake a receipt by texting "id:123 stat:DELIVRD".

Its content comes from two places, and we read both:
- TLVs (§5.3.2.12 receipted_message_id, §5.3.2.35 message_state, §5.3.2.31 network_error_code): structured,
  so they win when present;
- the short_message text in the de-facto format of Appendix B, which the spec calls vendor specific:
  ``id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...``
  Real SMSCs vary: field names in any case, fields missing or reordered, ids in hex or zero-padded decimal,
  dates with seconds, full words ("DELIVERED") for the 7-letter states. Fields are read only before
  "text:", which quotes the start of the original message and could contain anything.

Ids. The SMSC's submit_sm_resp and its receipts may write the same id differently (hex "0A1B" in one,
decimal "0000002587" in the other). `message_id_key` turns an id into a key in a form chosen per carrier.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from switchboard.sms.smpp.pdu import DataSm, DeliverSm, MessageState, NetworkErrorCode

__all__ = [
    "DeliveryReceipt",
    "IdForm",
    "is_receipt",
    "message_id_key",
    "parse_receipt",
]

MESSAGE_TYPE_MASK = 0b0011_1100
"""esm_class bits 5..2: the message type of a deliver_sm or data_sm from the SMSC (§5.2.12)."""
SMSC_DELIVERY_RECEIPT = 0b0000_0100
"""Message type 0001: an SMSC delivery receipt (§5.2.12)."""
INTERMEDIATE_NOTIFICATION = 0b0010_0000
"""Message type 1000: an intermediate delivery notification, e.g. ENROUTE or ACCEPTD (§5.2.12)."""
UCS2_DATA_CODING = 0x08
"""data_coding for UCS-2 (§5.2.19); any other value is read as ASCII-compatible octets (see `_text`)."""

# The 7-letter states of Appendix B, and the full words some SMSCs write instead.
_STATES = {
    "ENROUTE": MessageState.ENROUTE,
    "DELIVRD": MessageState.DELIVERED,
    "DELIVERED": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "UNDELIVERABLE": MessageState.UNDELIVERABLE,
    "UNDELIVERED": MessageState.UNDELIVERABLE,
    "ACCEPTD": MessageState.ACCEPTED,
    "ACCEPTED": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
    "REJECTED": MessageState.REJECTED,
}
# `key:value` pairs of the receipt text; "submit date" may also be written "submit_date" or "submitdate".
_FIELD = re.compile(r"\b(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err)\s*:\s*(\S*)", re.IGNORECASE)
_TEXT = re.compile(r"\btext\s*:", re.IGNORECASE)
_DATE = re.compile(r"[0-9]{10}(?:[0-9]{2})?")
_SMALL_NUMBER = re.compile(r"[0-9]{1,3}")
# Ids are at most 64 characters (§5.2.23); the bound also keeps int() clear of its 4300-digit limit.
_NUMBER = {10: re.compile(r"[0-9]{1,64}"), 16: re.compile(r"[0-9A-Fa-f]{1,64}")}


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What a receipt says about one submitted message."""

    message_id: str
    """The SMSC's id of the message, as the receipt writes it (see `message_id_key` to match it)."""
    state: MessageState
    error: str | None = None
    """The text's err: field as written ("000", "0x1A", ...): its meaning is the SMSC's, not the spec's."""
    network_error: NetworkErrorCode | None = None
    submit_date: datetime | None = None
    """When the SMSC took the message, in its local time: the receipt does not say which zone."""
    done_date: datetime | None = None
    """When the SMSC reached this state, in its local time."""

    @property
    def final(self) -> bool:
        """False for ENROUTE and ACCEPTED, which intermediate notifications report: more will follow."""
        return self.state not in (MessageState.ENROUTE, MessageState.ACCEPTED)


def is_receipt(pdu: DeliverSm | DataSm) -> bool:
    """Whether esm_class marks `pdu` as a delivery receipt or an intermediate notification (§5.2.12)."""
    return (pdu.esm_class & MESSAGE_TYPE_MASK) in (SMSC_DELIVERY_RECEIPT, INTERMEDIATE_NOTIFICATION)


def parse_receipt(pdu: DeliverSm | DataSm, *, details: bool = True) -> DeliveryReceipt | None:
    """The receipt in `pdu`, or None when it is not one (`is_receipt`) or names no message id or no state.

    TLVs win over the text for the id and the state; the text adds err:, the dates and, when the TLVs are
    absent, the id and the state. A state written in a way we do not know is UNKNOWN, not None: the SMSC
    did report on the message.

    `details=False` leaves out what a gateway does not act on, for speed (thousands of receipts a second):
    the dates are not read, and when the TLVs give both the id and a DELIVERED state, neither is the text
    (so `error` is None: an err: beside a delivery means nothing).
    """
    if not is_receipt(pdu):
        return None
    tlv_id, tlv_state = pdu.receipted_message_id, pdu.message_state
    if not details and tlv_id and tlv_state == MessageState.DELIVERED:
        return DeliveryReceipt(tlv_id, MessageState.DELIVERED, network_error=pdu.network_error_code)
    fields = _fields(_text(pdu))
    message_id = tlv_id or fields.get("id")
    if not message_id:
        return None
    if tlv_state is not None:
        state = _state_of(tlv_state)
    elif "stat" in fields:
        stat = fields["stat"].upper()
        if _SMALL_NUMBER.fullmatch(stat):  # a few SMSCs write the §5.2.28 value: "stat:2"
            state = _state_of(int(stat))
        else:
            state = _STATES.get(stat, MessageState.UNKNOWN)
    else:
        return None
    return DeliveryReceipt(
        message_id=message_id,
        state=state,
        error=fields.get("err") or None,
        network_error=pdu.network_error_code,
        submit_date=_date(fields.get("submitdate")) if details else None,
        done_date=_date(fields.get("donedate")) if details else None,
    )


def _state_of(value: int) -> MessageState:
    try:
        return MessageState(value)
    except ValueError:
        return MessageState.UNKNOWN


def _text(pdu: DeliverSm | DataSm) -> str:
    """The receipt text. Every character Appendix B uses (letters, digits, space, ':') has the same code in
    ASCII, latin-1 and the GSM default alphabet, so any data_coding but UCS-2 reads right as latin-1."""
    octets = pdu.short_message if isinstance(pdu, DeliverSm) else b""
    if not octets:
        octets = pdu.message_payload or b""
    if pdu.data_coding == UCS2_DATA_CODING:
        return octets.decode("utf-16-be", "replace")
    return octets.decode("latin-1")


def _fields(text: str) -> dict[str, str]:
    """The Appendix B fields before "text:", keys lower-cased without spaces; the first of a repeat wins."""
    end = _TEXT.search(text)
    found: dict[str, str] = {}
    for match in _FIELD.finditer(text, 0, end.start() if end else len(text)):
        key = match.group(1).lower().replace(" ", "").replace("_", "")
        found.setdefault(key, match.group(2))
    return found


def _date(value: str | None) -> datetime | None:
    """YYMMDDhhmm, or YYMMDDhhmmss as some SMSCs write it; None when absent or not a real time."""
    if value is None or not _DATE.fullmatch(value):
        return None
    # By hand rather than strptime, which was 4 % of the server's time at 5,000 receipts a second (py-spy,
    # docs/benchmarks.md); the years as strptime's %y reads them (POSIX: 69-99 are 19xx, 00-68 20xx).
    yy = int(value[0:2])
    second = int(value[10:12]) if len(value) == 12 else 0
    try:
        return datetime(yy + (1900 if yy >= 69 else 2000), int(value[2:4]), int(value[4:6]),
                        int(value[6:8]), int(value[8:10]), second)  # fmt: skip
    except ValueError:  # not a real time: 31 February, hour 25
        return None


class IdForm(enum.Enum):
    """How one SMSC writes message ids in one place (submit_sm_resp, or receipts); set per carrier.

    It cannot be guessed from an id: "1234" is valid decimal and valid hex, and a hex id is all digits
    often enough ((10/16)^8, about 1 in 40, for 8 hex digits) that guessing would now and then match a
    receipt to the wrong message. Kannel's `msg-id-type` is the same setting.
    """

    TEXT = "text"
    """An opaque string, compared as written (surrounding spaces aside). The default."""
    DECIMAL = "decimal"
    """A decimal number, perhaps zero-padded ("0000002587")."""
    HEX = "hex"
    """A hexadecimal number, in either case, perhaps zero-padded ("0A1B")."""


def message_id_key(message_id: str, form: IdForm = IdForm.TEXT) -> str:
    """The key to store or look up `message_id` under: ids that name the same message get the same key.

    DECIMAL and HEX ids become their value in decimal without leading zeros, so "0A1B" (HEX), "2587" and
    "0000002587" (DECIMAL) all give "2587"; a TEXT id is kept as written, so a TEXT "2587" matches them too.
    An id that is not a number in the form given is kept as written rather than refused: a receipt we
    cannot match is logged by the connector, not a reason to fail. Control characters (a NUL inside a
    receipt's `id:`) are left out, on both sides alike: PostgreSQL cannot store or compare a NUL, and one
    such receipt would otherwise fail every batch of receipts written with it.
    """
    if message_id.isascii() and message_id.isprintable():  # the usual id: no control character to leave out
        text = message_id.strip()
    else:
        text = "".join(ch for ch in message_id if ch >= " " and ch != "\x7f").strip()
    if form is IdForm.TEXT:
        return text
    if form is IdForm.DECIMAL:
        if text.isdigit() and text.isascii() and len(text) <= 64:  # _NUMBER[10], without the regex
            return str(int(text))
        return text
    if _NUMBER[16].fullmatch(text):
        return str(int(text, 16))
    return text
