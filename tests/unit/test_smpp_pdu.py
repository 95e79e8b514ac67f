"""The SMPP 3.4 PDU codec: known frames, round trips of every PDU, each strictness rule, TLVs, framing.

Expected frames are written out from the spec's field tables (§4), not produced by our encoder; the
Hypothesis strategies give each field its spec size independently of the codec's own declarations.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import Callable
from typing import Any, get_args
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import switchboard.sms.smpp.pdu as codec
from switchboard.domain.encoding import gsm7_septets, ucs2_bytes
from switchboard.errors import PduError, ProtocolError
from switchboard.sms.smpp.pdu import (
    MAX_PDU_LENGTH,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CommandId,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    FrameReader,
    GenericNack,
    NetworkErrorCode,
    Outbind,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    TlvTag,
    Unbind,
    UnbindResp,
    command_status,
    decode,
    encode,
    frame_length,
    is_transient,
    status_name,
)

S = CommandStatus


def hexframe(text: str) -> bytes:
    """Bytes from hex written in groups, with `#` comments to the end of a line."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


def frame(command_id: int, body: bytes = b"", *, status: int = 0, sequence: int = 1) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


def refused(data: bytes) -> PduError:
    with pytest.raises(PduError) as caught:
        decode(data)
    return caught.value


# --- known frames ----------------------------------------------------------------------------------------


def test_enquire_link_is_a_bare_header() -> None:
    wire = hexframe("00000010 00000015 00000000 00000001")
    assert encode(EnquireLink(sequence=1)) == wire
    assert decode(wire) == EnquireLink(sequence=1)


def test_bind_transceiver_frame() -> None:
    wire = hexframe("""
        0000002A 00000009 00000000 00000001
        736D7070636C69656E743100   # system_id "smppclient1"
        70617373776F726400         # password "password"
        00                         # system_type ""
        34                         # interface_version 3.4
        00 00                      # addr_ton, addr_npi
        00                         # address_range ""
    """)
    pdu = BindTransceiver(sequence=1, system_id="smppclient1", password="password")
    assert encode(pdu) == wire
    assert decode(wire) == pdu


def test_submit_sm_with_gsm_text() -> None:
    text = gsm7_septets("Hello €")  # unpacked septets, € is escape + 0x65: what SMSCs take with data_coding 0
    wire = hexframe("""
        0000003B 00000004 00000000 00000002
        00                          # service_type ""
        05 00 53776974636800        # source TON alphanumeric, NPI unknown, "Switch"
        01 01 34343737303039303031323300  # destination TON international, NPI ISDN, "447700900123"
        00 00 00                    # esm_class, protocol_id, priority_flag
        00 00                       # schedule_delivery_time, validity_period: both "" (immediate, default)
        01 00 00 00                 # registered_delivery (receipt wanted), replace_if_present, data_coding, default msg
        08 48656C6C6F201B65         # sm_length 8, "Hello €"
    """)
    pdu = SubmitSm(
        sequence=2,
        source_addr_ton=5,
        source_addr="Switch",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        registered_delivery=1,
        short_message=text,
    )
    assert encode(pdu) == wire
    assert decode(wire) == pdu


def test_submit_sm_with_ucs2_text_and_sar_tlvs() -> None:
    pdu = SubmitSm(
        sequence=3,
        destination_addr="79001234567",
        data_coding=8,
        short_message=ucs2_bytes("Привет"),
        tlvs=(
            Tlv.integer(TlvTag.SAR_MSG_REF_NUM, 0x1234),
            Tlv.integer(TlvTag.SAR_TOTAL_SEGMENTS, 2),
            Tlv.integer(TlvTag.SAR_SEGMENT_SEQNUM, 1),
        ),
    )
    wire = encode(pdu)
    assert wire.endswith(hexframe("020C 0002 1234  020E 0001 02  020F 0001 01"))
    decoded = decode(wire)
    assert decoded == pdu
    assert isinstance(decoded, SubmitSm)
    assert (decoded.sar_msg_ref_num, decoded.sar_total_segments, decoded.sar_segment_seqnum) == (0x1234, 2, 1)


def test_submit_sm_resp_with_error_status_has_no_body() -> None:
    wire = hexframe("00000010 80000004 00000058 00000007")
    pdu = decode(wire)
    assert pdu == SubmitSmResp(sequence=7, status=S.ESME_RTHROTTLED)
    assert isinstance(pdu, SubmitSmResp) and pdu.status is S.ESME_RTHROTTLED and pdu.message_id == ""
    assert encode(pdu) == wire  # §4.4.2: the body is not returned with an error


def test_error_response_with_a_body_is_taken_too() -> None:
    pdu = decode(frame(CommandId.SUBMIT_SM_RESP, b"\0", status=S.ESME_RINVDSTADR))
    assert pdu == SubmitSmResp(sequence=1, status=S.ESME_RINVDSTADR)


def test_submit_sm_resp_carries_the_message_id() -> None:
    wire = hexframe("00000015 80000004 00000000 00000002 30413142 00")
    assert decode(wire) == SubmitSmResp(sequence=2, message_id="0A1B")
    assert encode(SubmitSmResp(sequence=2, message_id="0A1B")) == wire


def test_bind_resp_with_sc_interface_version() -> None:
    wire = frame(CommandId.BIND_TRANSCEIVER_RESP, b"SMSC\0" + hexframe("0210 0001 34"))
    pdu = decode(wire)
    assert isinstance(pdu, BindTransceiverResp)
    assert pdu.system_id == "SMSC" and pdu.sc_interface_version == 0x34
    failed = decode(frame(CommandId.BIND_TRANSCEIVER_RESP, status=S.ESME_RINVPASWD))
    assert failed == BindTransceiverResp(sequence=1, status=S.ESME_RINVPASWD)


def test_deliver_sm_resp_keeps_its_empty_message_id_even_on_error() -> None:
    # Only bind and submit_sm responses omit the body on error (§4.1.2, §4.4.2); deliver_sm_resp keeps it.
    assert encode(DeliverSmResp(sequence=9)) == frame(CommandId.DELIVER_SM_RESP, b"\0", sequence=9)
    error = DeliverSmResp(sequence=9, status=S.ESME_RX_T_APPN)
    assert encode(error) == frame(CommandId.DELIVER_SM_RESP, b"\0", status=0x64, sequence=9)


def test_unknown_status_is_kept_as_a_number() -> None:
    pdu = decode(frame(CommandId.SUBMIT_SM_RESP, status=0x401))
    assert isinstance(pdu, SubmitSmResp) and pdu.status == 0x401
    assert command_status(0x401) == 0x401 and not isinstance(command_status(0x401), CommandStatus)
    assert status_name(0x401) == "0x00000401"
    assert status_name(0x58) == "ESME_RTHROTTLED"
    assert command_status(0x58) is S.ESME_RTHROTTLED


def test_transient_statuses() -> None:
    for status in (S.ESME_RTHROTTLED, S.ESME_RMSGQFUL, S.ESME_RSYSERR, S.ESME_RX_T_APPN, S.ESME_RINVBNDSTS):
        assert is_transient(status), status
    for status in (S.ESME_RINVDSTADR, S.ESME_RX_P_APPN, S.ESME_RX_R_APPN, S.ESME_RUNKNOWNERR, S.ESME_RINVDCS):
        assert not is_transient(status), status
    assert not is_transient(0x401)  # unknown: promises nothing


# --- every PDU round-trips -------------------------------------------------------------------------------

TLVS = (Tlv(0x1400, b"vendor"), Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "abc"), Tlv(0x1400, b""))
EXAMPLES: list[Any] = [
    BindTransmitter(sequence=1, system_id="a" * 15, password="b" * 8, system_type="c" * 12, address_range="d" * 40),
    BindReceiver(sequence=2, system_id="rx", addr_ton=1, addr_npi=1, address_range="^44"),
    BindTransceiver(sequence=3, system_id="trx", interface_version=0x33),
    BindTransmitterResp(sequence=1, system_id="SMSC", tlvs=(Tlv.integer(TlvTag.SC_INTERFACE_VERSION, 0x34),)),
    BindReceiverResp(sequence=2, status=S.ESME_RBINDFAIL),
    BindTransceiverResp(sequence=3, system_id="x"),
    Outbind(sequence=4, system_id="smsc", password="pw"),
    Unbind(sequence=5),
    UnbindResp(sequence=5),
    EnquireLink(sequence=0x7FFFFFFF),
    EnquireLinkResp(sequence=0x7FFFFFFF),
    GenericNack(sequence=6, status=S.ESME_RINVCMDID),
    SubmitSm(
        sequence=7,
        service_type="CMT",
        source_addr="1" * 20,
        destination_addr="2" * 20,
        esm_class=0x40,
        protocol_id=0x7F,
        priority_flag=3,
        schedule_delivery_time="000000001000000R",
        validity_period="260101120000004+",
        registered_delivery=1,
        replace_if_present_flag=1,
        data_coding=8,
        sm_default_msg_id=255,
        short_message=bytes(range(254)),
        tlvs=TLVS,
    ),
    SubmitSmResp(sequence=7, message_id="m" * 64),
    DeliverSm(sequence=8, esm_class=0x04, short_message=b"id:1 stat:DELIVRD"),
    DeliverSmResp(sequence=8),
    DataSm(
        sequence=9, source_addr="s" * 64, destination_addr="d" * 64, tlvs=(Tlv(TlvTag.MESSAGE_PAYLOAD, b"x" * 1000),)
    ),
    DataSmResp(sequence=9, message_id="id", tlvs=(Tlv(0x0425, b"\x01"),)),
    AlertNotification(sequence=10, source_addr="447700900123", esme_addr="switchboard", tlvs=(Tlv(0x0422, b"\0"),)),
]


def test_the_examples_cover_every_pdu_type() -> None:
    assert {type(pdu) for pdu in EXAMPLES} == set(get_args(Pdu))
    assert {cls.command_id for cls in get_args(Pdu)} == set(CommandId)


@pytest.mark.parametrize("pdu", EXAMPLES, ids=lambda pdu: type(pdu).__name__)
def test_every_pdu_round_trips(pdu: Pdu) -> None:
    wire = encode(pdu)
    assert frame_length(wire[:16]) == len(wire)
    assert struct.unpack(">I", wire[4:8])[0] == type(pdu).command_id
    assert decode(wire) == pdu


def test_latin1_addresses_round_trip_byte_for_byte() -> None:
    # The spec says ASCII, SMSCs send latin-1 alphanumeric senders; one byte is one character either way.
    pdu = DeliverSm(sequence=1, source_addr="Café\xff")
    assert decode(encode(pdu)) == pdu
    assert b"Caf\xe9\xff\0" in encode(pdu)


# --- strictness: decode ------------------------------------------------------------------------------------

BIND_BODY = b"id\0pw\0\0\x34\0\0\0"
SM_HEAD = b"\0" + b"\0\0src\0" + b"\0\0dst\0" + b"\0\0\0"  # service_type .. priority_flag
SM_TAIL = b"\0\0\0\0"  # registered_delivery .. sm_default_msg_id


def sm_body(
    *, schedule: bytes = b"\0", validity: bytes = b"\0", message: bytes = b"\x02hi", rest: bytes = b""
) -> bytes:
    return SM_HEAD + schedule + validity + SM_TAIL + message + rest


def test_a_valid_hand_built_submit_sm_decodes() -> None:
    assert decode(frame(CommandId.SUBMIT_SM, sm_body())) == SubmitSm(
        sequence=1, source_addr="src", destination_addr="dst", short_message=b"hi"
    )


def bind(body: bytes, command_id: int = CommandId.BIND_TRANSMITTER) -> bytes:
    return frame(command_id, body)


def submit(**parts: bytes) -> bytes:
    return frame(CommandId.SUBMIT_SM, sm_body(**parts))


def with_tlv(tag: int, value: bytes, *, size: int | None = None) -> bytes:
    """A deliver_sm with one TLV; `size` overrides its length field."""
    header = struct.pack(">HH", tag, len(value) if size is None else size)
    return frame(CommandId.DELIVER_SM, sm_body(rest=header + value))


CASES: dict[str, tuple[bytes, CommandStatus]] = {
    "shorter than a header": (bytes(15), S.ESME_RINVCMDLEN),
    "empty": (b"", S.ESME_RINVCMDLEN),
    "command_length below 16": (struct.pack(">IIII", 15, 0x15, 0, 1), S.ESME_RINVCMDLEN),
    "command_length above the frame": (struct.pack(">IIII", 17, 0x15, 0, 1), S.ESME_RINVCMDLEN),
    "command_length below the frame": (struct.pack(">IIII", 16, 0x15, 0, 1) + b"\0", S.ESME_RINVCMDLEN),
    "command_length above the limit": (struct.pack(">IIII", MAX_PDU_LENGTH + 1, 0x15, 0, 1), S.ESME_RINVCMDLEN),
    "unknown command_id": (frame(0x00000003, b"x"), S.ESME_RINVCMDID),
    "response bit on a request-only command": (frame(0x8000000B), S.ESME_RINVCMDID),
    "body on enquire_link": (frame(CommandId.ENQUIRE_LINK, b"\0"), S.ESME_RINVCMDLEN),
    "body on generic_nack": (frame(CommandId.GENERIC_NACK, b"\0", status=3), S.ESME_RINVCMDLEN),
    "trailing octet after a bind": (bind(BIND_BODY + b"\0"), S.ESME_RINVCMDLEN),
    "bind cut short": (bind(BIND_BODY[:-2]), S.ESME_RINVCMDLEN),
    "bind body ends in a string": (bind(b"id"), S.ESME_RINVCMDLEN),
    "system_id of 16 characters": (bind(b"s" * 16 + b"\0" + BIND_BODY[3:]), S.ESME_RINVSYSID),
    "password of 9 characters": (bind(b"id\0" + b"p" * 9 + b"\0\0\x34\0\0\0"), S.ESME_RINVPASWD),
    "system_type of 13 characters": (bind(b"id\0pw\0" + b"t" * 13 + b"\0\x34\0\0\0"), S.ESME_RINVSYSTYP),
    "address_range of 41 characters": (bind(b"id\0pw\0\0\x34\0\0" + b"r" * 41 + b"\0"), S.ESME_RBINDFAIL),
    "service_type of 6 characters": (frame(CommandId.SUBMIT_SM, b"CMTxyz\0" + sm_body()[1:]), S.ESME_RINVSERTYP),
    "source_addr of 21 characters": (
        frame(CommandId.SUBMIT_SM, b"\0\0\0" + b"1" * 21 + b"\0" + sm_body()[7:]),
        S.ESME_RINVSRCADR,
    ),
    "destination_addr of 21 characters": (
        frame(CommandId.DELIVER_SM, b"\0\0\0src\0\0\0" + b"2" * 21 + b"\0" + sm_body()[13:]),
        S.ESME_RINVDSTADR,
    ),
    "schedule_delivery_time of 15 characters": (submit(schedule=b"0" * 14 + b"R\0"), S.ESME_RINVSCHED),
    "schedule_delivery_time not a time": (submit(schedule=b"0" * 15 + b"X\0"), S.ESME_RINVSCHED),
    "validity_period of 17 characters": (submit(validity=b"0" * 16 + b"+\0"), S.ESME_RINVEXPIRY),
    "sm_length of 255": (submit(message=b"\xff" + bytes(255)), S.ESME_RINVMSGLEN),
    "sm_length past the body": (submit(message=b"\x05hi"), S.ESME_RINVMSGLEN),
    "body ends before sm_length": (submit(message=b""), S.ESME_RINVCMDLEN),
    "partial TLV header": (submit(rest=b"\x02\x0c\x00"), S.ESME_RINVOPTPARSTREAM),
    "TLV past the body": (with_tlv(0x1400, b"abc", size=5), S.ESME_RINVOPTPARSTREAM),
    "message_state of 2 octets": (with_tlv(TlvTag.MESSAGE_STATE, b"\0\2"), S.ESME_RINVPARLEN),
    "network_error_code of 2 octets": (with_tlv(TlvTag.NETWORK_ERROR_CODE, b"\3\0"), S.ESME_RINVPARLEN),
    "sar_msg_ref_num of 1 octet": (with_tlv(TlvTag.SAR_MSG_REF_NUM, b"\7"), S.ESME_RINVPARLEN),
    "receipted_message_id with a NUL inside": (with_tlv(0x001E, b"a\0b\0"), S.ESME_RINVOPTPARAMVAL),
    "receipted_message_id of 65 characters": (with_tlv(0x001E, b"9" * 65), S.ESME_RINVOPTPARAMVAL),
    "message_id of 65 characters": (frame(CommandId.SUBMIT_SM_RESP, b"m" * 65 + b"\0"), S.ESME_RINVMSGID),
    "data_sm source_addr of 65 characters": (
        frame(CommandId.DATA_SM, b"\0\0\0" + b"s" * 65 + b"\0\0\0d\0\0\0\0"),
        S.ESME_RINVSRCADR,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_decode_refuses_with_the_status_that_names_the_fault(case: str) -> None:
    data, status = CASES[case]
    assert refused(data).status is status


def test_the_error_carries_the_header_it_could_read() -> None:
    error = refused(frame(0x00000003, sequence=42))
    assert (error.command_id, error.sequence, error.status) == (3, 42, S.ESME_RINVCMDID)
    error = refused(frame(CommandId.DELIVER_SM, sm_body(message=b"\xff"), sequence=43))
    assert (error.command_id, error.sequence, error.status) == (CommandId.DELIVER_SM, 43, S.ESME_RINVMSGLEN)
    error = refused(bytes.fromhex("00000020 00000015"))
    assert (error.command_id, error.sequence) == (0x15, None)
    assert isinstance(error, ProtocolError)  # the family of every codec's refusal catches it


def test_receipted_message_id_without_its_nul_is_tolerated() -> None:
    pdu = decode(frame(CommandId.DELIVER_SM, sm_body(rest=b"\x00\x1e\x00\x04" + b"0A1B")))
    assert isinstance(pdu, DeliverSm) and pdu.receipted_message_id == "0A1B"


def test_requests_ignore_a_stray_command_status() -> None:
    assert decode(frame(CommandId.ENQUIRE_LINK, status=5)) == EnquireLink(sequence=1)


# --- strictness: encode ------------------------------------------------------------------------------------


def base_submit(**changes: Any) -> SubmitSm:
    return dataclasses.replace(SubmitSm(sequence=1, destination_addr="447700900123"), **changes)


ENCODE_CASES: dict[str, tuple[Any, CommandStatus]] = {
    "source_addr of 21 characters": (base_submit(source_addr="1" * 21), S.ESME_RINVSRCADR),
    "destination_addr with a NUL": (base_submit(destination_addr="44\x0077"), S.ESME_RINVDSTADR),
    "destination_addr not latin-1": (base_submit(destination_addr="44€"), S.ESME_RINVDSTADR),
    "short_message of 255 octets": (base_submit(short_message=bytes(255)), S.ESME_RINVMSGLEN),
    "short_message as text": (base_submit(short_message="hi"), S.ESME_RINVMSGLEN),
    "esm_class of 256": (base_submit(esm_class=256), S.ESME_RINVESMCLASS),
    "negative data_coding": (base_submit(data_coding=-1), S.ESME_RINVDCS),
    "registered_delivery True": (base_submit(registered_delivery=True), S.ESME_RINVREGDLVFLG),
    "validity_period not a time": (base_submit(validity_period="tomorrow"), S.ESME_RINVEXPIRY),
    "sequence of 2**32": (EnquireLink(sequence=2**32), S.ESME_RSYSERR),
    "negative status": (GenericNack(sequence=1, status=-1), S.ESME_RSYSERR),
    "password of 9 characters": (BindTransmitter(sequence=1, system_id="id", password="p" * 9), S.ESME_RINVPASWD),
    "message_state TLV of 2 octets": (base_submit(tlvs=(Tlv(TlvTag.MESSAGE_STATE, b"\0\2"),)), S.ESME_RINVPARLEN),
    "TLV value over 64K": (base_submit(tlvs=(Tlv(0x1400, bytes(0x10000)),)), S.ESME_RINVPARLEN),
    "TLV tag over 16 bits": (base_submit(tlvs=(Tlv(0x10000, b""),)), S.ESME_RINVOPTPARSTREAM),
    "a tuple instead of a Tlv": (base_submit(tlvs=((0x1400, b""),)), S.ESME_RINVOPTPARSTREAM),
    "tlvs None": (base_submit(tlvs=None), S.ESME_RINVOPTPARSTREAM),
    "frame over the limit": (base_submit(tlvs=(Tlv(0x1400, bytes(0xFFFF)), Tlv(0x1401, b"x"))), S.ESME_RINVCMDLEN),
}


@pytest.mark.parametrize("case", ENCODE_CASES)
def test_encode_refuses_what_the_spec_does_not_allow(case: str) -> None:
    pdu, status = ENCODE_CASES[case]
    with pytest.raises(PduError) as caught:
        encode(pdu)
    assert caught.value.status is status
    assert caught.value.command_id == type(pdu).command_id


def test_encode_takes_the_largest_values_the_spec_allows() -> None:
    pdu = base_submit(source_addr="1" * 20, short_message=bytes(254), validity_period="991231235959948-")
    assert decode(encode(pdu)) == pdu


# --- TLVs ------------------------------------------------------------------------------------------------------


def test_unknown_and_repeated_tlvs_are_kept_in_order() -> None:
    tlvs = (Tlv(0x1500, b"a"), Tlv(TlvTag.MESSAGE_STATE, b"\x02"), Tlv(0x1500, b"b"), Tlv(0x0001, b""))
    pdu = decode(encode(DeliverSm(sequence=1, esm_class=4, tlvs=tlvs)))
    assert isinstance(pdu, DeliverSm)
    assert pdu.tlvs == tlvs
    assert pdu.tlv(0x1500) == b"a"  # the first of a repeat
    assert pdu.tlv(0x1501) is None


def test_typed_tlv_accessors() -> None:
    tlvs = (
        Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "0A1B"),
        Tlv.integer(TlvTag.MESSAGE_STATE, 5),
        Tlv(TlvTag.NETWORK_ERROR_CODE, b"\x03\x00\x22"),
        Tlv(TlvTag.MESSAGE_PAYLOAD, b"long text"),
        Tlv.integer(TlvTag.USER_MESSAGE_REFERENCE, 0xBEEF),
    )
    pdu = decode(encode(DeliverSm(sequence=1, tlvs=tlvs)))
    assert isinstance(pdu, DeliverSm)
    assert pdu.receipted_message_id == "0A1B"
    assert pdu.message_state == 5
    assert pdu.network_error_code == NetworkErrorCode(network_type=3, error=0x22)
    assert pdu.message_payload == b"long text"
    assert pdu.user_message_reference == 0xBEEF
    assert pdu.sar_msg_ref_num is None and pdu.sc_interface_version is None


# --- framing -------------------------------------------------------------------------------------------------


def drain(reader: FrameReader) -> list[bytes]:
    frames = []
    while (one := reader.next_frame()) is not None:
        frames.append(one)
    return frames


def test_frame_reader_splits_a_stream_fed_in_random_chunks() -> None:
    frames = [encode(pdu) for pdu in EXAMPLES]
    stream = b"".join(frames)
    rng = random.Random(4)
    for _ in range(20):
        reader, got, pos = FrameReader(), [], 0
        while pos < len(stream):
            size = rng.choice([1, 2, 3, 15, 16, 17, 100, 1000])
            reader.feed(stream[pos : pos + size])
            pos += size
            got += drain(reader)
        assert got == frames
        assert reader.buffered == 0


def test_frame_reader_waits_for_the_whole_frame() -> None:
    reader = FrameReader()
    wire = encode(EnquireLink(sequence=1))
    reader.feed(wire[:15])
    assert reader.next_frame() is None
    reader.feed(wire[15:] + wire[:3])
    assert reader.next_frame() == wire
    assert reader.next_frame() is None and reader.buffered == 3


def test_frame_reader_refuses_a_bad_length_and_stays_refused() -> None:
    reader = FrameReader()
    good = encode(EnquireLink(sequence=1))
    reader.feed(good + struct.pack(">IIII", MAX_PDU_LENGTH + 1, CommandId.SUBMIT_SM, 0, 9))
    assert reader.next_frame() == good
    with pytest.raises(PduError) as caught:
        reader.next_frame()
    assert (caught.value.status, caught.value.sequence) == (S.ESME_RINVCMDLEN, 9)
    reader.feed(good)
    with pytest.raises(PduError):
        reader.next_frame()


# --- properties ----------------------------------------------------------------------------------------------

U8 = st.integers(0, 0xFF)
U32 = st.integers(0, 0xFFFFFFFF)
TIMES = st.one_of(st.just(""), st.from_regex(r"[0-9]{15}[-+R]", fullmatch=True))


def cstr(size: int) -> st.SearchStrategy[str]:
    """A C-Octet String field of max `size` octets with its NUL: up to size - 1 latin-1 characters, no NUL."""
    return st.text(st.characters(min_codepoint=1, max_codepoint=0xFF), max_size=size - 1)


KNOWN_SIZES = {0x0204: 2, 0x020C: 2, 0x020E: 1, 0x020F: 1, 0x0210: 1, 0x0423: 3, 0x0427: 1}  # §5.3.2
ANY_TLV = st.builds(
    Tlv,
    tag=st.integers(0, 0xFFFF).filter(lambda tag: tag not in KNOWN_SIZES and tag != 0x001E),
    value=st.binary(max_size=40),
)
SIZED_TLV = st.sampled_from(sorted(KNOWN_SIZES)).flatmap(
    lambda tag: st.builds(Tlv, tag=st.just(tag), value=st.binary(min_size=KNOWN_SIZES[tag], max_size=KNOWN_SIZES[tag]))
)
RECEIPT_TLV = cstr(65).map(lambda text: Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, text))
TLV_LISTS = st.lists(st.one_of(ANY_TLV, SIZED_TLV, RECEIPT_TLV), max_size=4).map(tuple)

BIND = {"system_id": cstr(16), "password": cstr(9), "system_type": cstr(13), "interface_version": U8,
        "addr_ton": U8, "addr_npi": U8, "address_range": cstr(41)}  # fmt: skip
SHORT_MESSAGE = {"service_type": cstr(6), "source_addr_ton": U8, "source_addr_npi": U8, "source_addr": cstr(21),
                 "dest_addr_ton": U8, "dest_addr_npi": U8, "destination_addr": cstr(21), "esm_class": U8,
                 "protocol_id": U8, "priority_flag": U8, "schedule_delivery_time": TIMES, "validity_period": TIMES,
                 "registered_delivery": U8, "replace_if_present_flag": U8, "data_coding": U8,
                 "sm_default_msg_id": U8, "short_message": st.binary(max_size=254), "tlvs": TLV_LISTS}  # fmt: skip
DATA_SM = {"service_type": cstr(6), "source_addr_ton": U8, "source_addr_npi": U8, "source_addr": cstr(65),
           "dest_addr_ton": U8, "dest_addr_npi": U8, "destination_addr": cstr(65), "esm_class": U8,
           "registered_delivery": U8, "data_coding": U8, "tlvs": TLV_LISTS}  # fmt: skip
ALERT = {"source_addr_ton": U8, "source_addr_npi": U8, "source_addr": cstr(65), "esme_addr_ton": U8,
         "esme_addr_npi": U8, "esme_addr": cstr(65), "tlvs": TLV_LISTS}  # fmt: skip
RESPONSE = {"status": U32}
MESSAGE_ID_RESP = {"status": U32, "message_id": cstr(65), "tlvs": TLV_LISTS}
BIND_RESP = {"status": U32, "system_id": cstr(16), "tlvs": TLV_LISTS}
FIELDS: dict[type, dict[str, st.SearchStrategy[Any]]] = {
    BindTransmitter: BIND, BindReceiver: BIND, BindTransceiver: BIND,
    BindTransmitterResp: BIND_RESP, BindReceiverResp: BIND_RESP, BindTransceiverResp: BIND_RESP,
    Outbind: {"system_id": cstr(16), "password": cstr(9)},
    Unbind: {}, UnbindResp: RESPONSE, EnquireLink: {}, EnquireLinkResp: RESPONSE, GenericNack: RESPONSE,
    SubmitSm: SHORT_MESSAGE, DeliverSm: SHORT_MESSAGE, DataSm: DATA_SM, AlertNotification: ALERT,
    SubmitSmResp: MESSAGE_ID_RESP, DeliverSmResp: MESSAGE_ID_RESP, DataSmResp: MESSAGE_ID_RESP,
}  # fmt: skip
PDUS: st.SearchStrategy[Any] = st.one_of(
    [st.builds(cls, sequence=U32, **strategies) for cls, strategies in FIELDS.items()]
)


def test_the_strategies_set_every_field() -> None:
    assert set(FIELDS) == set(get_args(Pdu))
    for cls, strategies in FIELDS.items():
        assert {"sequence", *strategies} == {f.name for f in dataclasses.fields(cls)}, cls


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PDUS)
def test_valid_pdus_round_trip(pdu: Pdu) -> None:
    assert decode(encode(pdu)) == pdu


def decodes_or_refuses(data: bytes) -> None:
    """decode gives a PDU that re-encodes to an equal PDU, or raises PduError: never anything else."""
    try:
        pdu = decode(data)
    except PduError as error:
        assert isinstance(error.status, CommandStatus)
        return
    assert decode(encode(pdu)) == pdu


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_decode_of_arbitrary_bytes_never_raises_anything_else(data: bytes) -> None:
    decodes_or_refuses(data)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(CommandId)), U32, U32, st.binary(max_size=200))
def test_decode_of_any_body_under_a_valid_header_never_raises_anything_else(
    command_id: int, status: int, sequence: int, body: bytes
) -> None:
    decodes_or_refuses(frame(command_id, body, status=status, sequence=sequence))


MUTATIONS = st.one_of(
    st.tuples(
        st.just("flip"), st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4)
    ),
    st.tuples(st.just("truncate"), st.integers(0, 10_000)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("length"), U32),
    st.tuples(st.just("extend and fix length"), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("truncate and fix length"), st.integers(0, 10_000)),
)


def mutate(wire: bytes, mutation: tuple[str, Any]) -> bytes:
    kind, arg = mutation
    data = bytearray(wire)
    if kind == "flip":
        for pos, mask in arg:
            data[pos % len(data)] ^= mask
    elif kind.startswith("truncate"):
        del data[arg % len(data) :]
    elif kind.startswith("extend"):
        data += arg
    else:
        data[0:4] = struct.pack(">I", arg)
    if kind.endswith("fix length") and len(data) >= 4:
        data[0:4] = struct.pack(">I", len(data))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PDUS, MUTATIONS)
def test_decode_of_a_mutated_frame_never_raises_anything_else(pdu: Pdu, mutation: tuple[str, Any]) -> None:
    decodes_or_refuses(mutate(encode(pdu), mutation))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PDUS, min_size=1, max_size=6), st.lists(st.integers(1, 300), min_size=1, max_size=50))
def test_frame_reader_gives_the_same_frames_however_the_stream_is_cut(pdus: list[Pdu], sizes: list[int]) -> None:
    frames = [encode(pdu) for pdu in pdus]
    stream = b"".join(frames)
    reader, got, pos, turn = FrameReader(), [], 0, 0
    while pos < len(stream):
        size = sizes[turn % len(sizes)]
        reader.feed(stream[pos : pos + size])
        pos, turn = pos + size, turn + 1
        got += drain(reader)
    assert got == frames
    assert reader.buffered == 0


# --- fast paths --------------------------------------------------------------------------------------------------
# submit_sm, deliver_sm and their responses have code of their own for the common shape, which hands anything
# else to the walk over the layout: with it or without it, the same frames, PDUs and refusals.


def result(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args, **kwargs)
    except PduError as error:
        return "refused", (error.status, error.command_id, error.sequence, str(error))


def walked(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """`result` with the fast paths turned off."""
    with mock.patch.dict(codec._FAST_ENCODERS, clear=True), mock.patch.dict(codec._FAST_DECODERS, clear=True):
        return result(fn, *args, **kwargs)


FAST = (SubmitSm, DeliverSm, SubmitSmResp, DeliverSmResp, DataSmResp)
FAST_PDUS: st.SearchStrategy[Any] = st.one_of([st.builds(cls, sequence=U32, **FIELDS[cls]) for cls in FAST])


def test_the_hot_pdus_have_fast_paths() -> None:
    assert set(codec._FAST_ENCODERS) == set(codec._FAST_DECODERS) == set(FAST)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FAST_PDUS, st.one_of(st.none(), U32))
def test_fast_encoding_gives_the_frame_the_walk_gives(pdu: Pdu, sequence: int | None) -> None:
    assert result(encode, pdu, sequence=sequence) == walked(encode, pdu, sequence=sequence)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FAST_PDUS, st.one_of(st.none(), MUTATIONS))
def test_fast_decoding_gives_the_pdu_or_refusal_the_walk_gives(pdu: Pdu, mutation: tuple[str, Any] | None) -> None:
    wire = encode(pdu) if mutation is None else mutate(encode(pdu), mutation)
    assert result(decode, wire) == walked(decode, wire)


@pytest.mark.parametrize("case", ENCODE_CASES)
def test_fast_encoding_refuses_what_the_walk_refuses(case: str) -> None:
    pdu, _ = ENCODE_CASES[case]
    assert result(encode, pdu) == walked(encode, pdu)


def test_encode_with_a_sequence_numbers_the_frame_and_leaves_the_pdu_alone() -> None:
    pdu = base_submit(sequence=0)
    assert encode(pdu, sequence=0x7FFFFFFF) == encode(dataclasses.replace(pdu, sequence=0x7FFFFFFF))
    assert pdu.sequence == 0
