"""Delivery receipts from deliver_sm and data_sm: Appendix B text as real SMSCs write it, TLV-only receipts,
handset messages that only look like receipts, and matching the SMSC's ids across their written forms."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.domain.encoding import ucs2_bytes
from switchboard.sms.smpp.pdu import DataSm, DeliverSm, MessageState, NetworkErrorCode, Tlv, TlvTag
from switchboard.sms.smpp.receipt import DeliveryReceipt, IdForm, is_receipt, message_id_key, parse_receipt

RECEIPT = 0x04  # esm_class message type 0001: SMSC delivery receipt (§5.2.12)


def deliver(text: str | bytes = b"", *, esm_class: int = RECEIPT, **changes: object) -> DeliverSm:
    message = text.encode("latin-1") if isinstance(text, str) else text
    return DeliverSm(sequence=1, esm_class=esm_class, short_message=message, **changes)  # type: ignore[arg-type]


def test_the_appendix_b_format() -> None:
    pdu = deliver(
        "id:0123456789 sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:Hello"
    )
    assert parse_receipt(pdu) == DeliveryReceipt(
        message_id="0123456789",
        state=MessageState.DELIVERED,
        error="000",
        submit_date=datetime(2026, 1, 1, 12, 0),
        done_date=datetime(2026, 1, 1, 12, 1),
    )


@pytest.mark.parametrize(
    ("text", "message_id", "state", "error"),
    [
        # Kannel's test SMSC and many others: the 7-letter states
        ("id:7f3a sub:001 dlvrd:000 submit date:2601011200 done date:2601011300 stat:EXPIRED err:000 text:", "7f3a",
         MessageState.EXPIRED, "000"),
        ("id:7 sub:001 dlvrd:000 submit date:2601011200 done date:2601011300 stat:UNDELIV err:0B text:x", "7",
         MessageState.UNDELIVERABLE, "0B"),
        ("id:8 stat:REJECTD err:069", "8", MessageState.REJECTED, "069"),
        ("id:9 stat:DELETED", "9", MessageState.DELETED, None),
        ("id:9 stat:ACCEPTD", "9", MessageState.ACCEPTED, None),
        ("id:9 stat:UNKNOWN err:", "9", MessageState.UNKNOWN, None),
        ("id:9 stat:ENROUTE", "9", MessageState.ENROUTE, None),
        # lower case keys and values
        ("ID:abc-42 SUB:1 DLVRD:1 Submit Date:2601011200 Done Date:2601011201 Stat:delivrd Err:0 Text:hi", "abc-42",
         MessageState.DELIVERED, "0"),
        # full words, fields reordered, underscores in the date keys
        ("stat:DELIVERED id:1a2b submit_date:2601011200 done_date:2601011201", "1a2b", MessageState.DELIVERED, None),
        ("id:1 stat:UNDELIVERABLE err:1", "1", MessageState.UNDELIVERABLE, "1"),
        ("id:1 stat:REJECTED", "1", MessageState.REJECTED, None),
        # a few SMSCs write the §5.2.28 number
        ("id:1 stat:2 err:0", "1", MessageState.DELIVERED, "0"),
        # a state nobody defined is still a report on the message
        ("id:1 stat:FAILED err:34", "1", MessageState.UNKNOWN, "34"),
        # anything after text: quotes the original message, and is not read
        ("id:42 sub:001 dlvrd:000 stat:UNDELIV err:1 text:id:99 stat:DELIVRD", "42", MessageState.UNDELIVERABLE, "1"),
        # "text" without the field's colon ends nothing
        ("id:5 textual stat:DELIVRD", "5", MessageState.DELIVERED, None),
    ],
)  # fmt: skip
def test_real_world_text_variants(text: str, message_id: str, state: MessageState, error: str | None) -> None:
    receipt = parse_receipt(deliver(text))
    assert receipt is not None
    assert (receipt.message_id, receipt.state, receipt.error) == (message_id, state, error)


def test_dates_with_seconds_and_dates_that_are_not() -> None:
    receipt = parse_receipt(deliver("id:1 submit date:260101120030 done date:2613011200 stat:DELIVRD"))
    assert receipt is not None
    assert receipt.submit_date == datetime(2026, 1, 1, 12, 0, 30)
    assert receipt.done_date is None  # month 13


def test_a_tlv_only_receipt() -> None:
    pdu = deliver(
        tlvs=(
            Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "0A1B"),
            Tlv.integer(TlvTag.MESSAGE_STATE, MessageState.UNDELIVERABLE),
            Tlv(TlvTag.NETWORK_ERROR_CODE, b"\x03\x00\x01"),
        )
    )
    assert parse_receipt(pdu) == DeliveryReceipt(
        message_id="0A1B",
        state=MessageState.UNDELIVERABLE,
        network_error=NetworkErrorCode(network_type=3, error=1),
    )


def test_tlvs_win_over_the_text_which_still_adds_its_error_and_dates() -> None:
    pdu = deliver(
        "id:0000002587 done date:2601011201 stat:UNDELIV err:005",
        tlvs=(Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "0A1B"), Tlv.integer(TlvTag.MESSAGE_STATE, 2)),
    )
    assert parse_receipt(pdu) == DeliveryReceipt(
        message_id="0A1B", state=MessageState.DELIVERED, error="005", done_date=datetime(2026, 1, 1, 12, 1)
    )


def test_an_unknown_message_state_value_is_unknown() -> None:
    receipt = parse_receipt(deliver(tlvs=(Tlv.cstring(0x001E, "1"), Tlv(TlvTag.MESSAGE_STATE, b"\x09"))))
    assert receipt is not None and receipt.state is MessageState.UNKNOWN


def test_a_data_sm_receipt() -> None:
    pdu = DataSm(
        sequence=1,
        esm_class=RECEIPT,
        tlvs=(Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "77"), Tlv.integer(TlvTag.MESSAGE_STATE, 3)),
    )
    assert parse_receipt(pdu) == DeliveryReceipt(message_id="77", state=MessageState.EXPIRED)


def test_receipt_text_in_message_payload_or_ucs2() -> None:
    payload = deliver(tlvs=(Tlv(TlvTag.MESSAGE_PAYLOAD, b"id:3 stat:DELIVRD"),))
    ucs2 = deliver(ucs2_bytes("id:4 stat:EXPIRED err:0"), data_coding=8)
    assert parse_receipt(payload) == DeliveryReceipt(message_id="3", state=MessageState.DELIVERED)
    assert parse_receipt(ucs2) == DeliveryReceipt(message_id="4", state=MessageState.EXPIRED, error="0")


def test_intermediate_notifications_are_not_final() -> None:
    receipt = parse_receipt(deliver("id:5 stat:ENROUTE", esm_class=0x20))
    assert receipt is not None and receipt.state is MessageState.ENROUTE and not receipt.final
    final = parse_receipt(deliver("id:5 stat:DELIVRD"))
    assert final is not None and final.final


def test_esm_class_decides_not_the_text() -> None:
    text = "id:0123456789 sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000"
    for esm_class in (0x00, 0x40, 0x08, 0x10, 0x0C):  # MO, MO with UDH, SME acks, reserved type 0011
        pdu = deliver(text, esm_class=esm_class)
        assert not is_receipt(pdu) and parse_receipt(pdu) is None, esm_class
    # receipt type with other bits set (UDHI, messaging mode) is still a receipt
    assert is_receipt(deliver(text, esm_class=0x44)) and is_receipt(deliver(text, esm_class=0x07))


def test_a_receipt_without_an_id_or_a_state_cannot_be_used() -> None:
    assert parse_receipt(deliver("sub:001 dlvrd:001 stat:DELIVRD err:000")) is None
    assert parse_receipt(deliver("id:1 sub:001 dlvrd:001 err:000")) is None
    assert parse_receipt(deliver("id: stat:DELIVRD")) is None
    assert parse_receipt(deliver(b"")) is None
    assert parse_receipt(deliver(bytes(range(256))[:254])) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=254), st.integers(0, 255), st.integers(0, 255))
def test_any_short_message_parses_or_is_none(text: bytes, esm_class: int, data_coding: int) -> None:
    receipt = parse_receipt(deliver(text, esm_class=esm_class, data_coding=data_coding))
    assert receipt is None or (receipt.message_id and isinstance(receipt.state, MessageState))


# --- ids -------------------------------------------------------------------------------------------------------


def test_hex_and_zero_padded_decimal_forms_of_one_id_match() -> None:
    key = message_id_key("0A1B", IdForm.HEX)
    assert key == "2587"
    assert message_id_key("0a1b", IdForm.HEX) == key
    assert message_id_key("2587", IdForm.DECIMAL) == key
    assert message_id_key("0000002587", IdForm.DECIMAL) == key
    assert message_id_key("2587") == key  # TEXT kept as written: equal when written the same way


def test_text_ids_are_kept_as_written() -> None:
    assert message_id_key(" 0000002587 ") == "0000002587"
    assert message_id_key("c0ffee-42") == "c0ffee-42"
    assert message_id_key("ABC") != message_id_key("abc")


def test_an_id_not_in_the_form_given_is_kept_as_written() -> None:
    assert message_id_key("0A1B", IdForm.DECIMAL) == "0A1B"
    assert message_id_key("xyz", IdForm.HEX) == "xyz"
    assert message_id_key("", IdForm.HEX) == ""
    assert message_id_key("+12", IdForm.DECIMAL) == "+12"  # int() would take the sign; an id has none
    assert message_id_key("1_000", IdForm.DECIMAL) == "1_000"
    assert message_id_key("٣", IdForm.DECIMAL) == "٣"  # a non-ASCII digit
    long = "9" * 5000  # over int()'s 4300-digit limit: must not raise
    assert message_id_key(long, IdForm.DECIMAL) == long


@settings(max_examples=200)
@given(st.integers(0, 2**64))
def test_a_number_has_one_key_in_every_form(value: int) -> None:
    key = str(value)
    assert message_id_key(f"{value:x}", IdForm.HEX) == key
    assert message_id_key(f"{value:016X}", IdForm.HEX) == key
    assert message_id_key(f"{value:010d}", IdForm.DECIMAL) == key
    assert message_id_key(str(value), IdForm.TEXT) == key


@given(st.from_regex(r"[0-9]{10}([0-9]{2})?", fullmatch=True))
def test_receipt_dates_read_as_strptime_reads_them(value: str) -> None:
    from datetime import datetime

    from switchboard.sms.smpp.receipt import _date

    try:
        expected: datetime | None = datetime.strptime(value, "%y%m%d%H%M%S" if len(value) == 12 else "%y%m%d%H%M")
    except ValueError:
        expected = None
    assert _date(value) == expected


@pytest.mark.parametrize("form", list(IdForm))
def test_control_characters_are_left_out_of_id_keys(form: IdForm) -> None:
    """A NUL in a receipt's id (PostgreSQL cannot store one) must not reach the store; the same id without
    it still matches."""
    assert message_id_key("12\x00", form) == message_id_key("12", form)
    assert "\x00" not in message_id_key("\x00a\x01b\x7f", form)


def test_without_details_the_dates_are_not_read_nor_the_text_of_a_tlv_delivery() -> None:
    text = "id:9 sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:UNDELIV err:042 text:Hi"
    by_text = deliver(text)
    assert parse_receipt(by_text, details=False) == DeliveryReceipt("9", MessageState.UNDELIVERABLE, error="042")
    delivered = (Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "77"), Tlv(TlvTag.MESSAGE_STATE, b"\x02"))
    by_tlvs = deliver(text, tlvs=delivered)
    assert parse_receipt(by_tlvs, details=False) == DeliveryReceipt("77", MessageState.DELIVERED)
    assert parse_receipt(by_tlvs) == DeliveryReceipt(
        "77",
        MessageState.DELIVERED,
        error="042",
        submit_date=datetime(2026, 1, 1, 12, 0),
        done_date=datetime(2026, 1, 1, 12, 1),
    )


def reference_key(message_id: str, form: IdForm) -> str:
    """message_id_key as first written (a regex per form, every character looked at): the fast path gives the
    same key for every id."""
    text = "".join(ch for ch in message_id if ch >= " " and ch != "\x7f").strip()
    if form is IdForm.TEXT:
        return text
    base = 10 if form is IdForm.DECIMAL else 16
    digits = r"[0-9]{1,64}" if base == 10 else r"[0-9A-Fa-f]{1,64}"
    return str(int(text, base)) if re.fullmatch(digits, text) else text


@settings(max_examples=300)
@given(
    st.one_of(st.text(max_size=70), st.from_regex(r" ?[0-9]{1,70} ?", fullmatch=True), st.text("0123456789٣ ")),
    st.sampled_from(IdForm),
)
def test_id_keys_are_what_the_reference_gives(message_id: str, form: IdForm) -> None:
    assert message_id_key(message_id, form) == reference_key(message_id, form)
