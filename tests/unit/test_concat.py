"""Concatenated inbound messages: the user data header read, and parts joined on octets then decoded."""

from __future__ import annotations

import pytest

from switchboard.domain.concat import Concat, decode, split_header
from switchboard.domain.encoding import gsm7_septets
from switchboard.store.inbound import PartKey, StoredPart, join

KEY = PartKey("smsc1", "447700900001", "12345", 7, 3)


def udh8(ref: int, total: int, seq: int) -> bytes:
    return bytes((5, 0, 3, ref, total, seq))


def udh16(ref: int, total: int, seq: int) -> bytes:
    return bytes((6, 8, 4, ref >> 8, ref & 0xFF, total, seq))


def part(seq: int, payload: bytes, *, data_coding: int = 8, part_id: int | None = None, at: int = 0) -> StoredPart:
    return StoredPart(part_id or seq, *KEY, seq, data_coding, payload.hex(), at)


def test_8_and_16_bit_references_are_read_and_other_elements_skipped() -> None:
    assert split_header(udh8(0xAB, 3, 2) + b"xy") == (Concat(0xAB, 3, 2), b"xy")
    assert split_header(udh16(0xBEEF, 4, 4) + b"xy") == (Concat(0xBEEF, 4, 4), b"xy")
    header = bytes((5, 4, 0x0B, 0x84, 0x23, 0xF0)) + bytes((0, 3, 9, 2, 1))  # application ports, then concat
    with_ports = bytes((len(header),)) + header + b"z"
    assert split_header(with_ports) == (Concat(9, 2, 1), b"z")


@pytest.mark.parametrize("header", [udh8(1, 1, 1), udh8(1, 0, 0), udh8(1, 3, 4), udh8(1, 3, 0), bytes((2, 0x24, 0))])
def test_a_header_that_names_no_longer_message_is_a_message_of_its_own(header: bytes) -> None:
    concat, payload = split_header(header + b"ok")
    assert concat is None and payload == b"ok"


def test_a_surrogate_pair_split_across_parts_is_joined_on_octets() -> None:
    octets = "ab😀cd".encode("utf-16-be")  # the emoji's two code units: octets 4..7
    parts = [part(1, octets[:6]), part(2, octets[6:9]), part(3, octets[9:])]  # also an odd split
    wholes, used = join(parts, complete_only=True)
    assert [(w.message.body, w.segments, w.missing, w.message.raw) for w in wholes] == [("ab😀cd", 3, None, None)]
    assert used == [1, 2, 3]


def test_parts_out_of_order_and_a_duplicate_place_join_once_in_order() -> None:
    text = "x" * 153 + "y" * 153 + "z"
    septets = gsm7_septets(text)
    parts = [part(1, septets[:153], data_coding=0), part(2, septets[153:306], data_coding=0, part_id=9),
             part(2, b"\x00" * 153, data_coding=0, part_id=12), part(3, septets[306:], data_coding=0)]  # fmt: skip
    wholes, used = join(sorted(parts, key=lambda p: (p.seq, p.id)), complete_only=True)
    assert [w.message.body for w in wholes] == [text]
    assert sorted(used) == [1, 3, 9]  # the first part 2 (the lower id) is the one kept


def test_an_incomplete_message_waits_unless_the_time_limit_ran_out() -> None:
    parts = [part(1, "Hello ".encode("utf-16-be"), at=5), part(3, "world".encode("utf-16-be"), at=9)]
    assert join(parts, complete_only=True) == ([], [])
    wholes, used = join(parts, complete_only=False)
    [whole] = wholes
    assert (whole.message.body, whole.segments, whole.missing, whole.message.received_at) == ("Hello world", 2, "2", 9)
    assert whole.message.raw == ("Hello " + "world").encode("utf-16-be").hex()  # incomplete: the octets kept too
    assert used == [1, 3]


def test_invalid_utf16_is_replaced_never_raised_and_the_octets_kept() -> None:
    assert decode(8, b"\xd8\x3d\x00A") == ("\ufffdA", True)
    assert decode(8, b"\x00A\x00") == ("A\ufffd", True)
    wholes, _ = join([part(1, b"\xdc\x00"), part(2, b"\x00B"), part(3, b"\x00C")], complete_only=True)
    assert [(w.message.body, w.message.raw) for w in wholes] == [("\ufffdBC", "dc0000420043")]


def test_gsm_septets_after_the_header_are_whole_septets_an_escape_across_parts_included() -> None:
    # Over SMPP the septets are unpacked (one an octet): no fill bits after the header (domain/concat.py).
    septets = gsm7_septets("a" * 152 + "€b")  # the escape is octet 153, its code the first of part 2
    wholes, _ = join([part(1, septets[:153], data_coding=0), part(2, septets[153:], data_coding=0),
                      part(3, b"", data_coding=0)], complete_only=True)  # fmt: skip
    assert [w.message.body for w in wholes] == ["a" * 152 + "€b"]
    assert decode(0, b"caf\xe9") == (None, False)
