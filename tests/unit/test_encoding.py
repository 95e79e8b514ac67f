from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.domain.encoding import (
    Encoding,
    encoding_for,
    gsm7_septets,
    gsm7_text,
    measure,
    segment,
    segment_count,
    ucs2_bytes,
)

# 3GPP TS 23.038 §6.2.1, indexed by septet value; 0x1B is the escape to the extension table.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
                 "|": 0x40, "€": 0x65}  # fmt: skip
EMOJI = "😀"  # U+1F600: outside the BMP, a surrogate pair in UTF-16
CYRILLIC = "ж"  # in the BMP, not in GSM


def units(text: str) -> int:
    """Septets for GSM7 text, UTF-16 code units otherwise."""
    if encoding_for(text) is Encoding.GSM7:
        return len(gsm7_septets(text))
    return len(ucs2_bytes(text)) // 2


def test_the_basic_table_encodes_each_character_as_its_position() -> None:
    assert len(GSM_BASIC) == 128
    for code, char in enumerate(GSM_BASIC):
        if code != 0x1B:
            assert encoding_for(char) is Encoding.GSM7, char
            assert gsm7_septets(char) == bytes([code]), char


def test_extension_characters_are_escape_plus_code_and_count_two_septets() -> None:
    for char, code in GSM_EXTENSION.items():
        assert encoding_for(char) is Encoding.GSM7, char
        assert gsm7_septets(char) == bytes([0x1B, code]), char
    assert gsm7_septets("a€b") == b"\x61\x1b\x65\x62"


@pytest.mark.parametrize("char", ["é", "ñ", "Ä", "ü", "É", "à", "ß", "Ç", "Ø", "å", "Δ", "¤", "§", "¿", "¡"])
def test_latin_letters_in_the_gsm_table_stay_gsm(char: str) -> None:
    assert encoding_for(f"Caf{char}") is Encoding.GSM7


@pytest.mark.parametrize("char", ["ê", "á", "í", "ó", "ú", "â", "ç", "ã", "õ", "œ", "`", "\x1b", "\t", "’", "…", EMOJI])
def test_characters_outside_gsm_make_the_whole_message_ucs2_never_a_question_mark(char: str) -> None:
    text = f"Hello {char} world"
    assert encoding_for(text) is Encoding.UCS2
    assert ucs2_bytes(text).decode("utf-16-be") == text
    with pytest.raises(ValueError, match="not in the GSM 7-bit alphabet"):
        gsm7_septets(text)


def test_empty_text_is_one_gsm_segment() -> None:
    assert encoding_for("") is Encoding.GSM7
    assert segment("") == [""]
    assert segment_count("") == 1
    assert measure("") == (Encoding.GSM7, 1)


@pytest.mark.parametrize(
    ("length", "count"),
    [(1, 1), (160, 1), (161, 2), (153 * 2, 2), (153 * 2 + 1, 3), (153 * 7, 7), (1000, 7)],
)
def test_gsm7_160_whole_then_153_a_part(length: int, count: int) -> None:
    text = "a" * length
    parts = segment(text)
    assert segment_count(text) == len(parts) == count
    assert "".join(parts) == text
    if count > 1:
        assert [len(p) for p in parts[:-1]] == [153] * (count - 1)


def test_extension_characters_count_two_septets_towards_160() -> None:
    assert segment_count("€" * 80) == 1  # 160 septets
    assert segment_count("€" * 80 + "a") == 2  # 161
    assert segment_count("a" * 159 + "€") == 2  # 161


def test_an_escape_pair_is_never_split_across_parts() -> None:
    text = "a" * 152 + "€" + "a" * 10  # 164 septets; the € would take septets 153 and 154
    assert segment(text) == ["a" * 152, "€" + "a" * 10]
    assert segment_count(text) == 2
    exactly = "a" * 151 + "€" + "a" * 10  # the € ends the first part exactly
    assert segment(exactly) == ["a" * 151 + "€", "a" * 10]


def test_a_part_boundary_pushed_by_escapes_can_add_a_part() -> None:
    text = "{" * 153  # 306 septets: two parts of 153 would split the 77th pair
    parts = segment(text)
    assert [len(gsm7_septets(p)) for p in parts] == [152, 152, 2]
    assert segment_count(text) == 3


@pytest.mark.parametrize(
    ("length", "count"),
    [(70, 1), (71, 2), (67 * 2, 2), (67 * 2 + 1, 3), (1000, 15)],
)
def test_ucs2_70_whole_then_67_a_part(length: int, count: int) -> None:
    text = CYRILLIC * length
    parts = segment(text)
    assert segment_count(text) == len(parts) == count
    if count > 1:
        assert [len(p) for p in parts[:-1]] == [67] * (count - 1)


def test_characters_outside_the_bmp_count_two_units() -> None:
    assert segment_count(EMOJI * 35) == 1  # 70 units
    assert segment(EMOJI * 36) == [EMOJI * 33, EMOJI * 3]  # 72 units; 33 pairs are 66 of a part's 67
    assert segment_count(EMOJI * 36) == 2


def test_a_surrogate_pair_is_never_split_across_parts() -> None:
    assert segment_count(CYRILLIC * 66 + EMOJI + CYRILLIC) == 1  # 69 units
    text = CYRILLIC * 66 + EMOJI + CYRILLIC * 5  # 73 units; the emoji would take units 67 and 68
    assert segment(text) == [CYRILLIC * 66, EMOJI + CYRILLIC * 5]
    assert segment_count(text) == 2


def test_ucs2_bytes_are_utf16_big_endian_with_surrogate_pairs() -> None:
    assert ucs2_bytes("A") == b"\x00A"
    assert ucs2_bytes("ж") == b"\x04\x36"
    assert ucs2_bytes(EMOJI) == b"\xd8\x3d\xde\x00"


def test_measure_is_encoding_and_count_together() -> None:
    assert measure("Welcome to Optimum Measures meassaging solution") == (Encoding.GSM7, 1)
    assert measure("नमस्ते") == (Encoding.UCS2, 1)
    assert measure("[" * 81) == (Encoding.GSM7, 2)


gsm_text = st.text(alphabet=st.sampled_from(sorted(set(GSM_BASIC) - {"\x1b"} | set(GSM_EXTENSION))), max_size=700)
any_text = st.text(
    alphabet=st.one_of(st.sampled_from(["a", "€", "{", "é", CYRILLIC, EMOJI, "ê"]), st.characters(codec="utf-8")),
    max_size=500,
)


@settings(max_examples=300)
@given(st.one_of(gsm_text, any_text))
def test_parts_rejoin_fit_their_limit_and_are_as_full_as_possible(text: str) -> None:
    encoding, count = measure(text)
    parts = segment(text)
    assert "".join(parts) == text
    assert count == segment_count(text) == len(parts)
    assert encoding is encoding_for(text)
    single, part = (160, 153) if encoding is Encoding.GSM7 else (70, 67)
    if len(parts) == 1:
        assert units(text) <= single
    else:
        assert units(text) > single
        assert all(units(p) <= part for p in parts)
        # Greedy: a part ends only where the next character would not fit.
        assert all(units(p + nxt[0]) > part for p, nxt in itertools.pairwise(parts))


@settings(max_examples=200)
@given(gsm_text)
def test_gsm_text_is_gsm7_and_its_septets_count_extension_characters_twice(text: str) -> None:
    assert encoding_for(text) is Encoding.GSM7
    assert len(gsm7_septets(text)) == len(text) + sum(text.count(c) for c in GSM_EXTENSION)


@given(st.text(alphabet=st.sampled_from(sorted((set(GSM_BASIC) - {"\x1b"}) | set(GSM_EXTENSION))), max_size=200))
def test_gsm7_text_reads_back_what_gsm7_septets_writes(text: str) -> None:
    assert gsm7_text(gsm7_septets(text)) == text


def test_gsm7_text_edge_cases() -> None:
    # An unknown extension code reads as its basic character; an escape at the end as nothing.
    assert gsm7_text(b"\x1b\x41\x1b") == "A"
    with pytest.raises(ValueError, match="0x80"):
        gsm7_text(b"a\x80")
