"""SMS text encodings and the parts a long message is sent in.

A message goes out in the GSM 7-bit default alphabet (3GPP TS 23.038 §6.2.1) when every character is in
its basic table or its extension table (§6.2.1.1; an extension character costs two septets, the escape
0x1B and its code), and in UCS-2 otherwise. A character that fits neither is never replaced by '?':
one such character makes the whole message UCS-2.

Sizes (3GPP TS 23.040 §9.2.3.24.1): a single message carries 140 octets, i.e. 160 septets or 70 UTF-16
code units. A concatenated message loses 6 octets of each part to the user data header, leaving 153
septets or 67 code units a part. A part never ends between an escape and its code, nor between the two
halves of a surrogate pair (a character outside the BMP, such as most emoji, is two code units).
"""

from __future__ import annotations

import enum
import re

__all__ = [
    "GSM7_PART_SEPTETS",
    "GSM7_SINGLE_SEPTETS",
    "UCS2_PART_UNITS",
    "UCS2_SINGLE_UNITS",
    "Encoding",
    "encoding_for",
    "gsm7_septets",
    "gsm7_text",
    "measure",
    "segment",
    "segment_count",
    "ucs2_bytes",
]

GSM7_SINGLE_SEPTETS = 160
"""Septets in a message sent whole: 140 octets × 8 / 7 (3GPP TS 23.040 §9.2.3.24)."""
GSM7_PART_SEPTETS = 153
"""Septets in each part of a concatenated message: 6-octet UDH, 134 octets left, 153 septets after fill."""
UCS2_SINGLE_UNITS = 70
"""UTF-16 code units in a message sent whole: 140 octets / 2."""
UCS2_PART_UNITS = 67
"""UTF-16 code units in each part of a concatenated message: (140 - 6) / 2."""

ESCAPE = 0x1B
"""Escape to the extension table (3GPP TS 23.038 §6.2.1.1)."""

# The basic table, indexed by septet value (3GPP TS 23.038 §6.2.1). Position 0x1B is the escape, not a
# character: the placeholder U+001B is removed from the set of encodable characters below.
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# The extension table's characters, with the code that follows the escape (3GPP TS 23.038 §6.2.1.1).
_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_BASIC_CODES = {char: code for code, char in enumerate(_BASIC) if code != ESCAPE}

# str.translate tables: character → its septet(s), one byte each, as latin-1 code points.
_SEPTETS = {ord(c): chr(code) for c, code in _BASIC_CODES.items()} | {
    ord(c): chr(ESCAPE) + chr(code) for c, code in _EXTENSION.items()
}

_NOT_BASIC = re.compile("[^" + "".join(re.escape(c) for c in _BASIC_CODES) + "]")
_NOT_GSM7 = re.compile("[^" + "".join(re.escape(c) for c in [*_BASIC_CODES, *_EXTENSION]) + "]")
_EXTENSION_CHAR = re.compile("[" + "".join(re.escape(c) for c in _EXTENSION) + "]")
_OUTSIDE_BMP = re.compile("[\U00010000-\U0010ffff]")


class Encoding(enum.Enum):
    """How a message's text is carried."""

    GSM7 = "gsm7"
    """GSM 03.38 default alphabet with its extension table, 7 bits a character (two for extension ones)."""
    UCS2 = "ucs2"
    """UTF-16 big-endian (UCS-2 in SMS terms), 16 bits a code unit; used when any character is not GSM."""


def encoding_for(text: str) -> Encoding:
    """GSM7 when every character is in the basic or the extension table, else UCS2."""
    return Encoding.GSM7 if _is_gsm7(text) else Encoding.UCS2


def _is_gsm7(text: str) -> bool:
    # One scan for the common case (basic table only); the second starts where the first stopped.
    hit = _NOT_BASIC.search(text)
    return hit is None or _NOT_GSM7.search(text, hit.start()) is None


def segment_count(text: str) -> int:
    """How many SMS `text` is sent as (1 for an empty text); the same as `len(segment(text))`, faster."""
    return measure(text)[1]


def measure(text: str) -> tuple[Encoding, int]:
    """`encoding_for(text)` and `segment_count(text)` together, scanning the text once in the common case."""
    hit = _NOT_BASIC.search(text)
    if hit is None:  # the common case: basic table only, one septet a character
        return Encoding.GSM7, _parts(len(text), GSM7_SINGLE_SEPTETS, GSM7_PART_SEPTETS)
    if _NOT_GSM7.search(text, hit.start()) is None:
        if len(text) + len(_EXTENSION_CHAR.findall(text, hit.start())) <= GSM7_SINGLE_SEPTETS:
            return Encoding.GSM7, 1
        return Encoding.GSM7, len(segment(text))  # two-septet characters move part boundaries: walk them
    if _OUTSIDE_BMP.search(text) is None:
        return Encoding.UCS2, _parts(len(text), UCS2_SINGLE_UNITS, UCS2_PART_UNITS)
    if len(text) + len(_OUTSIDE_BMP.findall(text)) <= UCS2_SINGLE_UNITS:
        return Encoding.UCS2, 1
    return Encoding.UCS2, len(segment(text))  # surrogate pairs move part boundaries: walk them


def _parts(size: int, single: int, part: int) -> int:
    return 1 if size <= single else -(-size // part)


def segment(text: str) -> list[str]:
    """Split `text` into the parts it is sent as: one part when it fits a single message.

    GSM7: up to 160 septets whole, else parts of at most 153 septets, an extension character never split
    from its escape. UCS2: up to 70 code units whole, else parts of at most 67, a surrogate pair never
    split. Joining the parts gives `text` back.
    """
    gsm7 = _is_gsm7(text)
    if gsm7:
        wide, single, part = _EXTENSION_CHAR, GSM7_SINGLE_SEPTETS, GSM7_PART_SEPTETS
    else:
        wide, single, part = _OUTSIDE_BMP, UCS2_SINGLE_UNITS, UCS2_PART_UNITS
    if wide.search(text) is None:
        if len(text) <= single:
            return [text]
        return [text[i : i + part] for i in range(0, len(text), part)]
    if len(text) + len(wide.findall(text)) <= single:
        return [text]
    parts: list[str] = []
    start = used = 0
    for index, char in enumerate(text):
        width = 2 if (char in _EXTENSION if gsm7 else char > "\uffff") else 1
        if used + width > part:
            parts.append(text[start:index])
            start, used = index, 0
        used += width
    parts.append(text[start:])
    return parts


def gsm7_septets(text: str) -> bytes:
    """`text` as GSM 7-bit septets, one byte each, not packed; an extension character is 0x1B + its code.

    Raises ValueError when `text` is not all GSM (check `encoding_for` first).
    """
    bad = _NOT_GSM7.search(text)
    if bad is not None:
        raise ValueError(f"not in the GSM 7-bit alphabet: {bad.group()!r} at {bad.start()}")
    return text.translate(_SEPTETS).encode("latin-1")


_EXTENSION_BY_CODE = {code: char for char, code in _EXTENSION.items()}


def gsm7_text(septets: bytes) -> str:
    """The text of GSM 7-bit septets, one byte each, not packed (the inverse of `gsm7_septets`); an escape
    followed by a code the extension table lacks reads as that code's basic character (3GPP TS 23.038
    §6.2.1.1), an escape at the very end as nothing.

    Raises ValueError on a byte above 0x7F (not a septet).
    """
    chars: list[str] = []
    escaped = False
    for septet in septets:
        if septet > 0x7F:
            raise ValueError(f"not a septet: 0x{septet:02X}")
        if escaped:
            escaped = False
            extension = _EXTENSION_BY_CODE.get(septet)
            if extension is not None:
                chars.append(extension)
                continue
            if septet == ESCAPE:  # escape, escape: reserved; nothing to show
                continue
        elif septet == ESCAPE:
            escaped = True
            continue
        chars.append(_BASIC[septet])
    return "".join(chars)


def ucs2_bytes(text: str) -> bytes:
    """`text` as UTF-16 big-endian, characters outside the BMP as surrogate pairs (what SMSCs expect)."""
    # surrogatepass: a lone surrogate cannot come from a JSON body (msgspec refuses it), but if one ever
    # reaches here it is sent as is rather than raising in the middle of a submit.
    return text.encode("utf-16-be", "surrogatepass")
