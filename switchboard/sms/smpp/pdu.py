"""SMPP 3.4 PDUs: one frozen dataclass per PDU, `encode` and `decode` between them and frames, and
`FrameReader` to cut a TCP byte stream into frames. Pure: no I/O, no clock, nothing a session decides.

Longer than our usual ~400 lines because it is one table, not several things: the command and status
codes, the PDUs' fields with their wire sizes, and the walk that reads or writes them belong together,
and splitting them would only scatter the spec across files. Section numbers are those of the SMPP v3.4
specification (Issue 1.2).

Every body field is declared once, on its dataclass, with its wire form (`_int8`, `_cstring`, ...); the
codec walks those declarations in field order, which is the order on the wire. The four PDUs of every
message (submit_sm, submit_sm_resp, deliver_sm, deliver_sm_resp) also have a written-out fast path for
their common shape, which hands anything else to the walk ("fast paths" below).

Strictness. `decode` refuses what the spec does not allow in the *structure* of a PDU: a command_length that
is not the frame's length or is outside 16..MAX_PDU_LENGTH, an unknown command_id, a C-Octet String that is
not NUL-terminated within its maximum size, a time that is not empty or YYMMDDhhmmsstnnp (§7.1), an
sm_length over 254 or past the end, a TLV that runs past the body or whose length is wrong for its tag, and
bytes left over. It does not judge *values* (a priority_flag of 7, a data_coding we do not know): that is the
application's call, and refusing them here would make us nack what a real SMSC sends. Tolerated, because
real SMSCs do it: a response with an error status and no body (the spec says so only for bind and submit_sm
responses, §4.1.2, §4.4.2), a receipted_message_id without its NUL, TLVs on submit_sm_resp and
deliver_sm_resp (SMPP 5.0 allows them), a command_status other than 0 in a request (ignored), a status we do
not know (kept as an int), and latin-1 rather than ASCII in C-Octet Strings (one octet is one character, so
a frame re-encodes to the same octets).

Errors. `PduError` is the only exception `decode` raises, whatever the bytes; it is also what `encode`
raises for a value the wire cannot carry or the spec forbids (a 22-character source_addr, a 255-octet
short_message). It subclasses ValueError, so either name catches it, and it carries the command_status that
names the fault: a session answers a bad request with it, and a connector can treat an encoding refusal
like the SMSC's own refusal with that status.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, get_args

from switchboard.errors import PduError

__all__ = [
    "HEADER_LENGTH",
    "INTERFACE_VERSION",
    "MAX_PDU_LENGTH",
    "MAX_SHORT_MESSAGE",
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CommandId",
    "CommandStatus",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "EnquireLink",
    "EnquireLinkResp",
    "FrameReader",
    "GenericNack",
    "MessageState",
    "NetworkErrorCode",
    "Outbind",
    "Pdu",
    "SubmitSm",
    "SubmitSmResp",
    "Tlv",
    "TlvTag",
    "Unbind",
    "UnbindResp",
    "command_status",
    "decode",
    "encode",
    "frame_length",
    "is_transient",
    "status_name",
]

HEADER_LENGTH = 16
"""command_length, command_id, command_status and sequence_number, 4 octets each (§3.2)."""
MAX_PDU_LENGTH = 64 * 1024
"""The longest frame we take or send. The spec sets no limit (command_length is 4 octets), so a peer could
make us buffer 4 GiB. The longest real message is 255 concatenated parts of 140 octets (35,700 octets), which
fits a message_payload TLV with room to spare; nothing we exchange needs more."""
MAX_SHORT_MESSAGE = 254
"""sm_length is 0..254 octets (§5.2.21); longer messages go in message_payload (§5.3.2.32)."""
MAX_TLV_VALUE = 0xFFFF
"""A TLV's length field is 2 octets (§5.3.1)."""
INTERFACE_VERSION = 0x34
"""interface_version for SMPP 3.4 (§5.2.4)."""
RESPONSE_BIT = 0x80000000
"""Set in the command_id of every response (§5.1.2.1)."""
MESSAGE_ID_SIZE = 65
"""message_id and receipted_message_id: C-Octet String, max 65 octets with the NUL (§5.2.23, §5.3.2.12)."""


class CommandId(enum.IntEnum):
    """The PDUs this client speaks (§5.1.2.1). Others (query_sm, submit_multi, ...) decode as unknown."""

    GENERIC_NACK = 0x80000000
    """A PDU the receiver could not take at all: bad length, unknown command (§4.3)."""
    BIND_RECEIVER = 0x00000001
    """Open a session to receive only (§4.1.3)."""
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    """Open a session to send only (§4.1.1)."""
    BIND_TRANSMITTER_RESP = 0x80000002
    SUBMIT_SM = 0x00000004
    """A message from us to a handset (§4.4)."""
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    """A message or a delivery receipt from the SMSC to us (§4.6)."""
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    """Close the session, from either side (§4.2)."""
    UNBIND_RESP = 0x80000006
    BIND_TRANSCEIVER = 0x00000009
    """Open a session to send and receive (§4.1.5)."""
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    """The SMSC asking us to bind_receiver to it (§4.1.7); decoded, never sent by a client."""
    ENQUIRE_LINK = 0x00000015
    """Keep-alive from either side (§4.11)."""
    ENQUIRE_LINK_RESP = 0x80000015
    ALERT_NOTIFICATION = 0x00000102
    """The SMSC telling us a handset is reachable again (§4.12); decoded, never sent by a client."""
    DATA_SM = 0x00000103
    """A message in either direction with TLVs only, no short_message (§4.7)."""
    DATA_SM_RESP = 0x80000103


class CommandStatus(enum.IntEnum):
    """command_status values (§5.1.3). A response may carry a value not listed here (SMSC vendors use
    0x400..0x4FF): `decode` keeps it as a plain int; see `command_status` and `status_name`."""

    ESME_ROK = 0x00
    """No error."""
    ESME_RINVMSGLEN = 0x01
    """Message length is invalid (sm_length)."""
    ESME_RINVCMDLEN = 0x02
    """Command length is invalid."""
    ESME_RINVCMDID = 0x03
    """Invalid command id."""
    ESME_RINVBNDSTS = 0x04
    """Incorrect bind status for the command (e.g. submit_sm on a receiver session)."""
    ESME_RALYBND = 0x05
    """Already bound."""
    ESME_RINVPRTFLG = 0x06
    """Invalid priority_flag."""
    ESME_RINVREGDLVFLG = 0x07
    """Invalid registered_delivery."""
    ESME_RSYSERR = 0x08
    """System error at the SMSC."""
    ESME_RINVSRCADR = 0x0A
    """Invalid source address."""
    ESME_RINVDSTADR = 0x0B
    """Invalid destination address."""
    ESME_RINVMSGID = 0x0C
    """Invalid message id."""
    ESME_RBINDFAIL = 0x0D
    """Bind failed."""
    ESME_RINVPASWD = 0x0E
    """Invalid password."""
    ESME_RINVSYSID = 0x0F
    """Invalid system_id."""
    ESME_RCANCELFAIL = 0x11
    """cancel_sm failed."""
    ESME_RREPLACEFAIL = 0x13
    """replace_sm failed."""
    ESME_RMSGQFUL = 0x14
    """Message queue full."""
    ESME_RINVSERTYP = 0x15
    """Invalid service_type."""
    ESME_RINVNUMDESTS = 0x33
    """Invalid number of destinations (submit_multi)."""
    ESME_RINVDLNAME = 0x34
    """Invalid distribution list name."""
    ESME_RINVDESTFLAG = 0x40
    """Invalid dest_flag (submit_multi)."""
    ESME_RINVSUBREP = 0x42
    """Invalid 'submit with replace' request."""
    ESME_RINVESMCLASS = 0x43
    """Invalid esm_class."""
    ESME_RCNTSUBDL = 0x44
    """Cannot submit to a distribution list."""
    ESME_RSUBMITFAIL = 0x45
    """submit_sm or submit_multi failed."""
    ESME_RINVSRCTON = 0x48
    """Invalid source address TON."""
    ESME_RINVSRCNPI = 0x49
    """Invalid source address NPI."""
    ESME_RINVDSTTON = 0x50
    """Invalid destination address TON."""
    ESME_RINVDSTNPI = 0x51
    """Invalid destination address NPI."""
    ESME_RINVSYSTYP = 0x53
    """Invalid system_type."""
    ESME_RINVREPFLAG = 0x54
    """Invalid replace_if_present_flag."""
    ESME_RINVNUMMSGS = 0x55
    """Invalid number of messages."""
    ESME_RTHROTTLED = 0x58
    """Throttling error: we exceeded the SMSC's allowed rate."""
    ESME_RINVSCHED = 0x61
    """Invalid schedule_delivery_time."""
    ESME_RINVEXPIRY = 0x62
    """Invalid validity_period."""
    ESME_RINVDFTMSGID = 0x63
    """Invalid sm_default_msg_id."""
    ESME_RX_T_APPN = 0x64
    """The ESME receiver's temporary application error."""
    ESME_RX_P_APPN = 0x65
    """The ESME receiver's permanent application error."""
    ESME_RX_R_APPN = 0x66
    """The ESME receiver rejects the message."""
    ESME_RQUERYFAIL = 0x67
    """query_sm failed."""
    ESME_RINVOPTPARSTREAM = 0xC0
    """Error in the optional (TLV) part of the body."""
    ESME_ROPTPARNOTALLWD = 0xC1
    """A TLV not allowed here."""
    ESME_RINVPARLEN = 0xC2
    """A TLV with an invalid length."""
    ESME_RMISSINGOPTPARAM = 0xC3
    """An expected TLV is missing."""
    ESME_RINVOPTPARAMVAL = 0xC4
    """A TLV with an invalid value."""
    ESME_RDELIVERYFAILURE = 0xFE
    """Delivery failure (data_sm_resp)."""
    ESME_RUNKNOWNERR = 0xFF
    """Unknown error."""
    ESME_RINVDCS = 0x104
    """Invalid data_coding. Defined by SMPP 5.0, returned by SMSCs that speak 3.4 too."""


_KNOWN_STATUSES: dict[int, CommandStatus] = {s.value: s for s in CommandStatus}
_TRANSIENT = frozenset(
    {
        CommandStatus.ESME_RTHROTTLED,
        CommandStatus.ESME_RMSGQFUL,
        CommandStatus.ESME_RSYSERR,
        CommandStatus.ESME_RX_T_APPN,
        CommandStatus.ESME_RINVBNDSTS,
    }
)


def is_transient(status: int) -> bool:
    """Whether the same request, sent again unchanged later, may succeed: the refusal says nothing about it.

    Transient: RTHROTTLED (we went too fast), RMSGQFUL (the SMSC's queue is full for now), RSYSERR (the SMSC
    failed internally; it names no fault of ours), RX_T_APPN (the receiver's error is *temporary* by name),
    and RINVBNDSTS (the session is not bound as the SMSC expects: rebinding fixes it, not the message).
    Everything else is permanent, including statuses we do not know: each other code names a fault in the
    request (an address, a flag, the length) that sending it again cannot fix, and an unknown one has
    promised nothing, so retrying it would only hold the message until its validity runs out. This is the
    split Kannel has used for years against real SMSCs.
    """
    return status in _TRANSIENT


def command_status(value: int) -> CommandStatus | int:
    """`value` as a CommandStatus when it is one, else the plain int: unknown statuses are kept, not refused."""
    return _KNOWN_STATUSES.get(value, value)


def status_name(value: int) -> str:
    """A status as logs and errors show it: its name ("ESME_RTHROTTLED") when known, else "0x00000401"."""
    status = command_status(value)
    return status.name if isinstance(status, CommandStatus) else f"0x{value:08X}"


class MessageState(enum.IntEnum):
    """message_state (§5.2.28): where a message stands, in query_sm_resp and in delivery receipts."""

    ENROUTE = 1
    """On its way: the SMSC is still trying (receipt text "ENROUTE")."""
    DELIVERED = 2
    """Delivered to the handset ("DELIVRD")."""
    EXPIRED = 3
    """The validity period ran out before delivery ("EXPIRED")."""
    DELETED = 4
    """Deleted, e.g. by cancel_sm or an operator ("DELETED")."""
    UNDELIVERABLE = 5
    """The SMSC gave up: the handset or network refused it ("UNDELIV")."""
    ACCEPTED = 6
    """Accepted on the subscriber's behalf, e.g. by customer care ("ACCEPTD")."""
    UNKNOWN = 7
    """The SMSC cannot say ("UNKNOWN")."""
    REJECTED = 8
    """The SMSC rejected it ("REJECTD")."""


class TlvTag(enum.IntEnum):
    """Optional parameter tags this client reads or writes (§5.3.2). Unknown tags are kept, not refused."""

    RECEIPTED_MESSAGE_ID = 0x001E
    """The SMSC's id of the message a receipt is about; C-Octet String, max 65 (§5.3.2.12)."""
    USER_MESSAGE_REFERENCE = 0x0204
    """The ESME's own reference for a message, 2 octets (§5.3.2.17)."""
    SAR_MSG_REF_NUM = 0x020C
    """Reference shared by the parts of one concatenated message, 2 octets (§5.3.2.22)."""
    SAR_TOTAL_SEGMENTS = 0x020E
    """How many parts the concatenated message has, 1 octet (§5.3.2.23)."""
    SAR_SEGMENT_SEQNUM = 0x020F
    """Which part this is, from 1, 1 octet (§5.3.2.24)."""
    SC_INTERFACE_VERSION = 0x0210
    """The SMPP version the SMSC supports, in bind responses, 1 octet (§5.3.2.25)."""
    NETWORK_ERROR_CODE = 0x0423
    """The network's error: network type (1 octet) and code (2 octets) (§5.3.2.31)."""
    MESSAGE_PAYLOAD = 0x0424
    """The message when longer than short_message allows, up to 64K octets (§5.3.2.32)."""
    MESSAGE_STATE = 0x0427
    """A receipt's message_state, 1 octet (§5.3.2.35)."""


# Fixed value sizes of the tags above (§5.3.2); a TLV of such a tag with another length is refused.
_TLV_SIZES: dict[int, int] = {
    TlvTag.USER_MESSAGE_REFERENCE: 2,
    TlvTag.SAR_MSG_REF_NUM: 2,
    TlvTag.SAR_TOTAL_SEGMENTS: 1,
    TlvTag.SAR_SEGMENT_SEQNUM: 1,
    TlvTag.SC_INTERFACE_VERSION: 1,
    TlvTag.NETWORK_ERROR_CODE: 3,
    TlvTag.MESSAGE_STATE: 1,
}


@dataclass(frozen=True, slots=True)
class Tlv:
    """One optional parameter as sent: its tag and its value's octets (§5.3.1)."""

    tag: int
    value: bytes

    @classmethod
    def integer(cls, tag: TlvTag, value: int) -> Tlv:
        """An Integer TLV of a tag with a fixed size (e.g. sar_msg_ref_num, 2 octets)."""
        return cls(tag, value.to_bytes(_TLV_SIZES[tag], "big"))

    @classmethod
    def cstring(cls, tag: int, value: str) -> Tlv:
        """A C-Octet String TLV, NUL-terminated (e.g. receipted_message_id)."""
        return cls(tag, value.encode("latin-1") + b"\0")


@dataclass(frozen=True, slots=True)
class NetworkErrorCode:
    """network_error_code (§5.3.2.31): which kind of network and its own error code."""

    network_type: int
    """1 ANSI-136, 2 IS-95, 3 GSM, 4 ANSI-41 (§5.3.2.31); others reserved."""
    error: int
    """The network's error code, e.g. a GSM MAP cause."""


class _Pdu:
    """What every PDU has; the codec reads these class attributes."""

    __slots__ = ()
    command_id: ClassVar[CommandId]
    omits_body_on_error: ClassVar[bool] = False
    """True when the spec says the body is not returned with an error status (§4.1.2, §4.4.2)."""
    sequence: int


class _Response(_Pdu):
    __slots__ = ()
    status: int


class _Optional:
    """Typed readers for the TLVs this client uses; each is None when the TLV is absent."""

    __slots__ = ()
    tlvs: tuple[Tlv, ...]

    def tlv(self, tag: int) -> bytes | None:
        """The value of the first TLV with `tag` (the spec allows each tag once; we keep any repeats)."""
        for tlv in self.tlvs:
            if tlv.tag == tag:
                return tlv.value
        return None

    def _integer(self, tag: int) -> int | None:
        value = self.tlv(tag)
        return None if value is None else int.from_bytes(value, "big")

    @property
    def receipted_message_id(self) -> str | None:
        value = self.tlv(TlvTag.RECEIPTED_MESSAGE_ID)
        return None if value is None else value.removesuffix(b"\0").decode("latin-1")

    @property
    def message_state(self) -> int | None:
        """The raw value; `MessageState(value)` for the known ones (1..8)."""
        return self._integer(TlvTag.MESSAGE_STATE)

    @property
    def network_error_code(self) -> NetworkErrorCode | None:
        value = self.tlv(TlvTag.NETWORK_ERROR_CODE)
        if value is None or len(value) != 3:
            return None
        return NetworkErrorCode(value[0], int.from_bytes(value[1:], "big"))

    @property
    def message_payload(self) -> bytes | None:
        return self.tlv(TlvTag.MESSAGE_PAYLOAD)

    @property
    def sar_msg_ref_num(self) -> int | None:
        return self._integer(TlvTag.SAR_MSG_REF_NUM)

    @property
    def sar_total_segments(self) -> int | None:
        return self._integer(TlvTag.SAR_TOTAL_SEGMENTS)

    @property
    def sar_segment_seqnum(self) -> int | None:
        return self._integer(TlvTag.SAR_SEGMENT_SEQNUM)

    @property
    def sc_interface_version(self) -> int | None:
        return self._integer(TlvTag.SC_INTERFACE_VERSION)

    @property
    def user_message_reference(self) -> int | None:
        return self._integer(TlvTag.USER_MESSAGE_REFERENCE)


# --- wire forms of body fields, attached to dataclass fields as metadata --------------------------------

_WIRE = "smpp"


@dataclass(frozen=True, slots=True)
class _Int8:
    status: CommandStatus
    """Named when encoding a value outside 0..255 (on the wire every octet is valid)."""


@dataclass(frozen=True, slots=True)
class _CString:
    size: int
    """Maximum octets including the NUL (§5.2: "Var. max N")."""
    status: CommandStatus
    time: bool = False
    """Empty or exactly 16 characters, YYMMDDhhmmsstnnp (§7.1.1): "Var. 1 or 17"."""


@dataclass(frozen=True, slots=True)
class _ShortMessage:
    """sm_length (1 octet) then that many octets (§5.2.21, §5.2.22)."""


@dataclass(frozen=True, slots=True)
class _Tlvs:
    """Every octet left in the body, as TLVs: tag (2 octets), length (2 octets), value (§5.3)."""


_WireForm = _Int8 | _CString | _ShortMessage | _Tlvs
_S = CommandStatus


def _int8(status: CommandStatus = _S.ESME_RSYSERR, default: int = 0) -> Any:
    return field(default=default, metadata={_WIRE: _Int8(status)})


def _cstring(size: int, status: CommandStatus, *, time: bool = False) -> Any:
    return field(default="", metadata={_WIRE: _CString(size, status, time)})


def _short_message() -> Any:
    return field(default=b"", metadata={_WIRE: _ShortMessage()})


def _tlvs() -> Any:
    return field(default=(), metadata={_WIRE: _Tlvs()})


# --- the PDUs (§4) ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Bind(_Pdu):
    """Opening a session (§4.1.1, §4.1.3, §4.1.5): who we are, and for a receiver which addresses we serve."""

    sequence: int
    system_id: str = _cstring(16, _S.ESME_RINVSYSID)
    password: str = _cstring(9, _S.ESME_RINVPASWD)
    system_type: str = _cstring(13, _S.ESME_RINVSYSTYP)
    interface_version: int = _int8(default=INTERFACE_VERSION)
    addr_ton: int = _int8(_S.ESME_RINVSRCTON)
    addr_npi: int = _int8(_S.ESME_RINVSRCNPI)
    address_range: str = _cstring(41, _S.ESME_RBINDFAIL)


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitter(_Bind):
    command_id = CommandId.BIND_TRANSMITTER


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiver(_Bind):
    command_id = CommandId.BIND_RECEIVER


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiver(_Bind):
    command_id = CommandId.BIND_TRANSCEIVER


@dataclass(frozen=True, slots=True, kw_only=True)
class _BindResp(_Response, _Optional):
    """The SMSC's answer to a bind (§4.1.2): its system_id, and sc_interface_version if it has one."""

    omits_body_on_error = True
    sequence: int
    status: int = CommandStatus.ESME_ROK
    system_id: str = _cstring(16, _S.ESME_RINVSYSID)
    tlvs: tuple[Tlv, ...] = _tlvs()


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitterResp(_BindResp):
    command_id = CommandId.BIND_TRANSMITTER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiverResp(_BindResp):
    command_id = CommandId.BIND_RECEIVER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiverResp(_BindResp):
    command_id = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbind(_Pdu):
    """The SMSC asking us to bind as a receiver (§4.1.7.1)."""

    command_id = CommandId.OUTBIND
    sequence: int
    system_id: str = _cstring(16, _S.ESME_RINVSYSID)
    password: str = _cstring(9, _S.ESME_RINVPASWD)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unbind(_Pdu):
    """Closing the session (§4.2.1); header only."""

    command_id = CommandId.UNBIND
    sequence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UnbindResp(_Response):
    command_id = CommandId.UNBIND_RESP
    sequence: int
    status: int = CommandStatus.ESME_ROK


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLink(_Pdu):
    """Keep-alive (§4.11.1); header only."""

    command_id = CommandId.ENQUIRE_LINK
    sequence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLinkResp(_Response):
    command_id = CommandId.ENQUIRE_LINK_RESP
    sequence: int
    status: int = CommandStatus.ESME_ROK


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericNack(_Response):
    """The answer to a PDU that could not be taken at all (§4.3.1); header only, status says why."""

    command_id = CommandId.GENERIC_NACK
    sequence: int
    status: int = CommandStatus.ESME_ROK


@dataclass(frozen=True, slots=True, kw_only=True)
class _ShortMessagePdu(_Pdu, _Optional):
    """submit_sm (§4.4.1) and deliver_sm (§4.6.1) share one body."""

    sequence: int
    service_type: str = _cstring(6, _S.ESME_RINVSERTYP)
    source_addr_ton: int = _int8(_S.ESME_RINVSRCTON)
    source_addr_npi: int = _int8(_S.ESME_RINVSRCNPI)
    source_addr: str = _cstring(21, _S.ESME_RINVSRCADR)
    dest_addr_ton: int = _int8(_S.ESME_RINVDSTTON)
    dest_addr_npi: int = _int8(_S.ESME_RINVDSTNPI)
    destination_addr: str = _cstring(21, _S.ESME_RINVDSTADR)
    esm_class: int = _int8(_S.ESME_RINVESMCLASS)
    protocol_id: int = _int8()
    priority_flag: int = _int8(_S.ESME_RINVPRTFLG)
    schedule_delivery_time: str = _cstring(17, _S.ESME_RINVSCHED, time=True)
    validity_period: str = _cstring(17, _S.ESME_RINVEXPIRY, time=True)
    registered_delivery: int = _int8(_S.ESME_RINVREGDLVFLG)
    replace_if_present_flag: int = _int8(_S.ESME_RINVREPFLAG)
    data_coding: int = _int8(_S.ESME_RINVDCS)
    sm_default_msg_id: int = _int8(_S.ESME_RINVDFTMSGID)
    short_message: bytes = _short_message()
    tlvs: tuple[Tlv, ...] = _tlvs()


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSm(_ShortMessagePdu):
    command_id = CommandId.SUBMIT_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSm(_ShortMessagePdu):
    """A message from a handset, or a delivery receipt when esm_class says so (see `receipt`)."""

    command_id = CommandId.DELIVER_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class _MessageIdResp(_Response, _Optional):
    """submit_sm_resp (§4.4.2), deliver_sm_resp (§4.6.2), data_sm_resp (§4.7.2). TLVs are taken on all
    three: SMPP 5.0 SMSCs add them to the first two even on a 3.4 bind, and they do no harm."""

    sequence: int
    status: int = CommandStatus.ESME_ROK
    message_id: str = _cstring(MESSAGE_ID_SIZE, _S.ESME_RINVMSGID)
    tlvs: tuple[Tlv, ...] = _tlvs()


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSmResp(_MessageIdResp):
    """The SMSC's answer to a submit: its message_id, which receipts refer to (§4.4.2)."""

    command_id = CommandId.SUBMIT_SM_RESP
    omits_body_on_error = True


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSmResp(_MessageIdResp):
    """Our answer to a deliver_sm; message_id is unused and left empty (§4.6.2)."""

    command_id = CommandId.DELIVER_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSmResp(_MessageIdResp):
    command_id = CommandId.DATA_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSm(_Pdu, _Optional):
    """A message carried in TLVs (message_payload), in either direction (§4.7.1)."""

    command_id = CommandId.DATA_SM
    sequence: int
    service_type: str = _cstring(6, _S.ESME_RINVSERTYP)
    source_addr_ton: int = _int8(_S.ESME_RINVSRCTON)
    source_addr_npi: int = _int8(_S.ESME_RINVSRCNPI)
    source_addr: str = _cstring(65, _S.ESME_RINVSRCADR)
    dest_addr_ton: int = _int8(_S.ESME_RINVDSTTON)
    dest_addr_npi: int = _int8(_S.ESME_RINVDSTNPI)
    destination_addr: str = _cstring(65, _S.ESME_RINVDSTADR)
    esm_class: int = _int8(_S.ESME_RINVESMCLASS)
    registered_delivery: int = _int8(_S.ESME_RINVREGDLVFLG)
    data_coding: int = _int8(_S.ESME_RINVDCS)
    tlvs: tuple[Tlv, ...] = _tlvs()


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertNotification(_Pdu, _Optional):
    """A handset reachable again (§4.12.1); no response is sent."""

    command_id = CommandId.ALERT_NOTIFICATION
    sequence: int
    source_addr_ton: int = _int8(_S.ESME_RINVSRCTON)
    source_addr_npi: int = _int8(_S.ESME_RINVSRCNPI)
    source_addr: str = _cstring(65, _S.ESME_RINVSRCADR)
    esme_addr_ton: int = _int8(_S.ESME_RINVDSTTON)
    esme_addr_npi: int = _int8(_S.ESME_RINVDSTNPI)
    esme_addr: str = _cstring(65, _S.ESME_RINVDSTADR)
    tlvs: tuple[Tlv, ...] = _tlvs()


Pdu = (
    BindTransmitter
    | BindReceiver
    | BindTransceiver
    | BindTransmitterResp
    | BindReceiverResp
    | BindTransceiverResp
    | Outbind
    | Unbind
    | UnbindResp
    | EnquireLink
    | EnquireLinkResp
    | GenericNack
    | SubmitSm
    | SubmitSmResp
    | DeliverSm
    | DeliverSmResp
    | DataSm
    | DataSmResp
    | AlertNotification
)

_CLASSES: dict[int, type[Pdu]] = {cls.command_id: cls for cls in get_args(Pdu)}
_LAYOUT: dict[type[Pdu], tuple[tuple[str, _WireForm], ...]] = {
    cls: tuple((f.name, f.metadata[_WIRE]) for f in fields(cls) if _WIRE in f.metadata) for cls in _CLASSES.values()
}
_Refuse = Callable[[CommandStatus, str], PduError]
_HEADER = struct.Struct(">IIII")
_TLV_HEADER = struct.Struct(">HH")
_LENGTH = struct.Struct(">I")
_TIME = re.compile(r"[0-9]{15}[-+R]")  # YYMMDDhhmmsstnn then p: '+'/'-' absolute, 'R' relative (§7.1.1)


# --- encoding -------------------------------------------------------------------------------------------


def encode(pdu: Pdu, *, sequence: int | None = None) -> bytes:
    """The frame for `pdu`, header included, with `sequence` in place of `pdu.sequence` when given (a session
    numbers its requests without making a copy of each PDU). Raises PduError for a value the spec does not
    allow."""
    if sequence is None:
        sequence = pdu.sequence
    fast = _FAST_ENCODERS.get(type(pdu))
    if fast is not None:
        frame = fast(pdu, sequence)
        if frame is not None:
            return frame
    return _encode(pdu, sequence)


def _encode(pdu: Pdu, sequence: int) -> bytes:
    """`encode` by walking the layout: every PDU, every value, and every refusal."""
    cls = type(pdu)
    status = pdu.status if isinstance(pdu, _Response) else CommandStatus.ESME_ROK

    def refuse(status: CommandStatus, message: str) -> PduError:
        return PduError(message, status=status, command_id=cls.command_id, sequence=sequence)

    for name, value in (("sequence", sequence), ("command_status", status)):
        if not _is_int(value, 0xFFFFFFFF):
            raise refuse(CommandStatus.ESME_RSYSERR, f"{name} must be a 4-octet unsigned integer, not {value!r}")
    body = bytearray()
    if not (status != CommandStatus.ESME_ROK and cls.omits_body_on_error and _body_is_empty(pdu)):
        for name, wire in _LAYOUT[cls]:
            value = getattr(pdu, name)
            if isinstance(wire, _Int8):
                if not _is_int(value, 0xFF):
                    raise refuse(wire.status, f"{name} must be an integer 0..255, not {value!r}")
                body.append(value)
            elif isinstance(wire, _CString):
                body += _encode_cstring(name, wire, value, refuse)
            elif isinstance(wire, _ShortMessage):
                if not isinstance(value, bytes) or len(value) > MAX_SHORT_MESSAGE:
                    size = len(value) if isinstance(value, bytes) else type(value).__name__
                    raise refuse(CommandStatus.ESME_RINVMSGLEN, f"short_message must be 0..254 octets, not {size}")
                body.append(len(value))
                body += value
            else:
                if not isinstance(value, tuple | list):
                    raise refuse(CommandStatus.ESME_RINVOPTPARSTREAM, f"tlvs must be a tuple of Tlv, not {value!r}")
                for tlv in value:
                    body += _encode_tlv(tlv, refuse)
    length = HEADER_LENGTH + len(body)
    if length > MAX_PDU_LENGTH:
        raise refuse(CommandStatus.ESME_RINVCMDLEN, f"PDU of {length} octets exceeds {MAX_PDU_LENGTH}")
    return _HEADER.pack(length, cls.command_id, status, sequence) + body


def _is_int(value: object, top: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top


def _body_is_empty(pdu: Pdu) -> bool:
    return all(getattr(pdu, f.name) == f.default for f in fields(pdu) if _WIRE in f.metadata)


def _encode_cstring(name: str, wire: _CString, value: object, refuse: _Refuse) -> bytes:
    if not isinstance(value, str):
        raise refuse(wire.status, f"{name} must be a str, not {type(value).__name__}")
    try:
        octets = value.encode("latin-1")
    except UnicodeEncodeError:
        raise refuse(wire.status, f"{name} must be latin-1 (the spec says ASCII): {value!r}") from None
    if b"\0" in octets:
        raise refuse(wire.status, f"{name} must not contain NUL: {value!r}")
    if len(octets) + 1 > wire.size:
        raise refuse(wire.status, f"{name} is at most {wire.size - 1} characters, not {len(octets)}: {value!r}")
    if wire.time and octets and not _TIME.fullmatch(value):
        raise refuse(wire.status, f"{name} must be empty or YYMMDDhhmmsstnnp (§7.1.1), not {value!r}")
    return octets + b"\0"


def _encode_tlv(tlv: object, refuse: _Refuse) -> bytes:
    if not (isinstance(tlv, Tlv) and _is_int(tlv.tag, 0xFFFF) and isinstance(tlv.value, bytes)):
        raise refuse(CommandStatus.ESME_RINVOPTPARSTREAM, f"tlvs must hold Tlv(tag 0..65535, bytes), not {tlv!r}")
    problem = _tlv_problem(tlv.tag, tlv.value)
    if problem is not None:
        raise refuse(*problem)
    return _TLV_HEADER.pack(tlv.tag, len(tlv.value)) + tlv.value


def _tlv_problem(tag: int, value: bytes) -> tuple[CommandStatus, str] | None:
    """What is wrong with a TLV's length for its tag, if anything; unknown tags take any length."""
    size = _TLV_SIZES.get(tag)
    if len(value) > MAX_TLV_VALUE:
        return CommandStatus.ESME_RINVPARLEN, f"TLV 0x{tag:04X} value of {len(value)} octets exceeds {MAX_TLV_VALUE}"
    if size is not None and len(value) != size:
        return CommandStatus.ESME_RINVPARLEN, f"TLV 0x{tag:04X} must be {size} octets, not {len(value)}"
    # NUL-terminated within 65 octets; tolerated without its NUL (some SMSCs omit it), so max 64 then.
    if tag == TlvTag.RECEIPTED_MESSAGE_ID and (
        len(value) > MESSAGE_ID_SIZE or b"\0" in value[:-1] or (len(value) == MESSAGE_ID_SIZE and value[-1] != 0)
    ):
        return CommandStatus.ESME_RINVOPTPARAMVAL, f"receipted_message_id is not a C-Octet String of max 65: {value!r}"
    return None


# --- fast paths -----------------------------------------------------------------------------------------
# The PDUs of every message (submit_sm out, its submit_sm_resp back, a receipt's deliver_sm in and our
# deliver_sm_resp out) are coded thousands of times a second. For them, code written out field by field
# takes the common shape (no TLVs to write, no times, values plainly in range) at a fraction of the cost of
# the walk over the layout; anything else (an unusual value, every error) declines with None and goes the
# walk's way, so both give the same frames, PDUs and refusals (tests/unit/test_smpp_pdu.py checks).


def _encode_short_message_pdu(pdu: _ShortMessagePdu, sequence: int) -> bytes | None:
    sm = pdu.short_message
    if type(pdu.tlvs) is not tuple or pdu.tlvs or pdu.schedule_delivery_time != "" or pdu.validity_period != "":
        return None
    if type(sm) is not bytes or len(sm) > MAX_SHORT_MESSAGE:
        return None
    ints = (
        pdu.source_addr_ton, pdu.source_addr_npi, pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.esm_class,
        pdu.protocol_id, pdu.priority_flag, pdu.registered_delivery, pdu.replace_if_present_flag,
        pdu.data_coding, pdu.sm_default_msg_id,
    )  # fmt: skip
    if type(sequence) is not int or not 0 <= sequence <= 0xFFFFFFFF or set(map(type, ints)) != {int}:
        return None
    try:
        service_type = pdu.service_type.encode("latin-1")
        source = pdu.source_addr.encode("latin-1")
        destination = pdu.destination_addr.encode("latin-1")
        octets = bytes(ints)  # ValueError outside 0..255
    except (AttributeError, UnicodeEncodeError, ValueError):
        return None
    if (
        len(service_type) > 5
        or len(source) > 20
        or len(destination) > 20
        or b"\0" in service_type + source + destination
    ):
        return None
    body = b"".join(
        (
            service_type, b"\0", octets[0:2], source, b"\0", octets[2:4], destination, b"\0", octets[4:7],
            b"\0\0", octets[7:11], bytes((len(sm),)), sm,
        )
    )  # fmt: skip
    return _HEADER.pack(HEADER_LENGTH + len(body), pdu.command_id, 0, sequence) + body


def _encode_message_id_resp(pdu: _MessageIdResp, sequence: int) -> bytes | None:
    status, message_id = pdu.status, pdu.message_id
    if (
        type(pdu.tlvs) is not tuple
        or pdu.tlvs
        or type(message_id) is not str
        or type(sequence) is not int
        or not 0 <= sequence <= 0xFFFFFFFF
    ):
        return None
    if type(status) not in (int, CommandStatus) or not 0 <= status <= 0xFFFFFFFF:
        return None
    if status and pdu.omits_body_on_error and not message_id:
        return _HEADER.pack(HEADER_LENGTH, pdu.command_id, status, sequence)
    try:
        octets = message_id.encode("latin-1")
    except UnicodeEncodeError:
        return None
    if len(octets) >= MESSAGE_ID_SIZE or b"\0" in octets:
        return None
    return _HEADER.pack(HEADER_LENGTH + len(octets) + 1, pdu.command_id, status, sequence) + octets + b"\0"


_Decoded = Callable[[type[Pdu], bytes, int, int, _Refuse], Pdu | None]
"""A fast decoder: (class, body, sequence, command_status, refuse) → the PDU, or None to walk the layout."""


def _decode_message_id_resp(cls: type[Pdu], body: bytes, sequence: int, status: int, refuse: _Refuse) -> Pdu | None:
    end = body.find(b"\0", 0, MESSAGE_ID_SIZE)
    if end < 0 or end != len(body) - 1:
        return None  # no body, TLVs, or a fault: the walk decides
    return cls(sequence=sequence, status=command_status(status), message_id=body[:end].decode("latin-1"))  # type: ignore[call-arg]


def _decode_short_message_pdu(cls: type[Pdu], body: bytes, sequence: int, status: int, refuse: _Refuse) -> Pdu | None:
    try:
        end = body.index(b"\0", 0, 6)
        service_type = body[:end].decode("latin-1")
        source_ton, source_npi = body[end + 1 : end + 3]
        pos = end + 3
        end = body.index(b"\0", pos, pos + 21)
        source = body[pos:end].decode("latin-1")
        dest_ton, dest_npi = body[end + 1 : end + 3]
        pos = end + 3
        end = body.index(b"\0", pos, pos + 21)
        destination = body[pos:end].decode("latin-1")
        esm_class, protocol_id, priority_flag, schedule, validity = body[end + 1 : end + 6]
        if schedule or validity:
            return None  # times to check: the walk does it
        registered_delivery, replace_if_present, data_coding, default_msg_id, size = body[end + 6 : end + 11]
    except ValueError:  # no NUL in reach, or fewer octets left than fields to unpack
        return None
    pos = end + 11
    if size > MAX_SHORT_MESSAGE or pos + size > len(body):
        return None
    short_message = body[pos : pos + size]
    pos += size
    tlvs = _decode_tlvs(body, pos, refuse) if pos < len(body) else ()
    return cls(  # type: ignore[call-arg]
        sequence=sequence, service_type=service_type, source_addr_ton=source_ton, source_addr_npi=source_npi,
        source_addr=source, dest_addr_ton=dest_ton, dest_addr_npi=dest_npi, destination_addr=destination,
        esm_class=esm_class, protocol_id=protocol_id, priority_flag=priority_flag,
        registered_delivery=registered_delivery, replace_if_present_flag=replace_if_present, data_coding=data_coding,
        sm_default_msg_id=default_msg_id, short_message=short_message, tlvs=tlvs,
    )  # fmt: skip


_FAST_ENCODERS: dict[type[Pdu], Callable[[Any, int], bytes | None]] = {
    SubmitSm: _encode_short_message_pdu,
    DeliverSm: _encode_short_message_pdu,
    SubmitSmResp: _encode_message_id_resp,
    DeliverSmResp: _encode_message_id_resp,
    DataSmResp: _encode_message_id_resp,
}
_FAST_DECODERS: dict[type[Pdu], _Decoded] = {
    SubmitSm: _decode_short_message_pdu,
    DeliverSm: _decode_short_message_pdu,
    SubmitSmResp: _decode_message_id_resp,
    DeliverSmResp: _decode_message_id_resp,
    DataSmResp: _decode_message_id_resp,
}


# --- decoding -------------------------------------------------------------------------------------------


def frame_length(header: bytes) -> int:
    """command_length from the first 16 octets of a frame, refused outside 16..MAX_PDU_LENGTH (RINVCMDLEN)."""
    if len(header) < HEADER_LENGTH:
        raise PduError(
            f"frame of {len(header)} octets is shorter than the header",
            status=CommandStatus.ESME_RINVCMDLEN,
            command_id=int.from_bytes(header[4:8], "big") if len(header) >= 8 else None,
        )
    length, command_id, _, sequence = _HEADER.unpack_from(header)
    if not HEADER_LENGTH <= length <= MAX_PDU_LENGTH:
        raise PduError(
            f"command_length {length} outside {HEADER_LENGTH}..{MAX_PDU_LENGTH}",
            status=CommandStatus.ESME_RINVCMDLEN,
            command_id=command_id,
            sequence=sequence,
        )
    return int(length)


def decode(frame: bytes) -> Pdu:
    """The PDU in one complete frame (command_length included). Raises PduError, and nothing else, for any
    frame the spec does not allow (see the module docstring for what is checked)."""
    frame = bytes(frame)
    length = frame_length(frame)
    _, command_id, status, sequence = _HEADER.unpack_from(frame)

    def refuse(status: CommandStatus, message: str) -> PduError:
        return PduError(message, status=status, command_id=command_id, sequence=sequence)

    if length != len(frame):
        raise refuse(CommandStatus.ESME_RINVCMDLEN, f"command_length {length} but the frame has {len(frame)} octets")
    cls = _CLASSES.get(command_id)
    if cls is None:
        raise refuse(CommandStatus.ESME_RINVCMDID, f"unknown command_id 0x{command_id:08X}")
    fast = _FAST_DECODERS.get(cls)
    if fast is not None:
        pdu = fast(cls, frame[HEADER_LENGTH:], sequence, status, refuse)
        if pdu is not None:
            return pdu
    kwargs: dict[str, Any] = {"sequence": sequence}
    is_response = issubclass(cls, _Response)
    if is_response:
        kwargs["status"] = command_status(status)
    body = frame[HEADER_LENGTH:]
    if is_response and status != CommandStatus.ESME_ROK and not body:
        # The spec omits the body on error for bind and submit_sm responses (§4.1.2, §4.4.2); SMSCs omit it on
        # other responses too. Every body field has a default.
        return cls(**kwargs)
    pos = 0
    for name, wire in _LAYOUT[cls]:
        if isinstance(wire, _Int8):
            if pos >= len(body):
                raise refuse(CommandStatus.ESME_RINVCMDLEN, f"body ends before {name}")
            kwargs[name] = body[pos]
            pos += 1
        elif isinstance(wire, _CString):
            end = body.find(b"\0", pos, pos + wire.size)
            if end < 0:
                if len(body) - pos < wire.size:
                    raise refuse(CommandStatus.ESME_RINVCMDLEN, f"body ends inside {name}")
                raise refuse(wire.status, f"{name} is not NUL-terminated within {wire.size} octets")
            value = body[pos:end].decode("latin-1")
            if wire.time and value and not _TIME.fullmatch(value):
                raise refuse(wire.status, f"{name} must be empty or YYMMDDhhmmsstnnp (§7.1.1), not {value!r}")
            kwargs[name] = value
            pos = end + 1
        elif isinstance(wire, _ShortMessage):
            if pos >= len(body):
                raise refuse(CommandStatus.ESME_RINVCMDLEN, "body ends before sm_length")
            size = body[pos]
            pos += 1
            if size > MAX_SHORT_MESSAGE or pos + size > len(body):
                raise refuse(CommandStatus.ESME_RINVMSGLEN, f"sm_length {size} with {len(body) - pos} octets left")
            kwargs[name] = body[pos : pos + size]
            pos += size
        else:
            kwargs[name] = _decode_tlvs(body, pos, refuse)
            pos = len(body)
    if pos != len(body):
        raise refuse(CommandStatus.ESME_RINVCMDLEN, f"{len(body) - pos} octets after the last field")
    return cls(**kwargs)


def _decode_tlvs(body: bytes, pos: int, refuse: _Refuse) -> tuple[Tlv, ...]:
    tlvs: list[Tlv] = []
    while pos < len(body):
        if len(body) - pos < _TLV_HEADER.size:
            raise refuse(CommandStatus.ESME_RINVOPTPARSTREAM, "body ends inside a TLV header")
        tag, size = _TLV_HEADER.unpack_from(body, pos)
        pos += _TLV_HEADER.size
        if pos + size > len(body):
            raise refuse(CommandStatus.ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04X} of {size} octets runs past the body")
        value = body[pos : pos + size]
        pos += size
        problem = _tlv_problem(tag, value)
        if problem is not None:
            raise refuse(*problem)
        tlvs.append(Tlv(tag, value))
    return tuple(tlvs)


class FrameReader:
    """Cuts a byte stream into complete frames, whatever sizes it arrives in.

    `feed` the octets as they come, then take `next_frame()` until it returns None. A header with a
    command_length outside 16..MAX_PDU_LENGTH raises PduError (RINVCMDLEN, with the header's command_id and
    sequence), once its 16 octets are in, so the outcome does not depend on how the stream was chunked;
    the stream is then lost (nothing says where the next frame starts) and every later call raises the
    same error.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0
        """Where the next frame begins in `_buffer`: frames are read off by moving it, and what they took is
        dropped at the next `feed` (one move of the leftover per read, not one per frame)."""
        self._error: PduError | None = None

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned as a frame: non-zero at EOF means a frame was cut off."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes) -> None:
        if self._start:
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next complete frame, or None until more octets are fed."""
        if self._error is not None:
            raise self._error
        start, buffer = self._start, self._buffer
        if len(buffer) - start < HEADER_LENGTH:
            return None
        length = _LENGTH.unpack_from(buffer, start)[0]
        if not HEADER_LENGTH <= length <= MAX_PDU_LENGTH:
            try:
                frame_length(bytes(buffer[start : start + HEADER_LENGTH]))
            except PduError as error:
                self._error = error
                raise
        if len(buffer) - start < length:
            return None
        self._start = start + length
        return bytes(buffer[start : start + length])
