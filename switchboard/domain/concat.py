"""Concatenated inbound messages, pure: which part a message is (its user data header), and the text of the
parts joined (ARCHITECTURE.md §2, "Two-way messaging").

A handset's long message reaches us as parts, each with a user data header (3GPP TS 23.040 §9.2.3.24) whose
concatenation element names the message (a reference, 8-bit with IEI 0x00 §9.2.3.24.1, or 16-bit with IEI
0x08 §9.2.3.24.8), the number of parts and this part's place (from 1). Other elements in the header (ports,
national language shifts) are skipped.

Joining works on octets, never on the text of each part: a UTF-16 surrogate pair, or an odd octet, may be
split across two parts, so the payloads are put together first and decoded once. GSM 03.38 text arrives over
SMPP one septet an octet, unpacked (§5.2.19 data_coding 0, as `sms/smpp/connector.py` sends it): the
header's fill bits (TS 23.040 §9.2.3.24, which align the first septet after the header on a septet boundary)
exist only in the packed user data on the air interface, and the SMSC has removed them with the packing, so
the payload after the header is whole septets. Text that is not what its data_coding says never raises: UCS-2
decodes with U+FFFD where it is broken (a lone surrogate, an odd length), GSM with a byte above 0x7F has no
text (the caller keeps the octets).
"""

from __future__ import annotations

from typing import NamedTuple

from switchboard.domain.encoding import gsm7_text

__all__ = ["DCS_ASCII", "DCS_GSM7", "DCS_LATIN1", "DCS_UCS2", "Concat", "decode", "split_header"]

DCS_GSM7 = 0x00
"""data_coding 0: the SMSC default alphabet, GSM 03.38 here (SMPP 3.4 §5.2.19)."""
DCS_ASCII = 0x01
"""data_coding 1: IA5 (CCITT T.50), i.e. ASCII (§5.2.19)."""
DCS_LATIN1 = 0x03
"""data_coding 3: Latin 1 (ISO-8859-1) (§5.2.19)."""
DCS_UCS2 = 0x08
"""data_coding 8: UCS-2, read as UTF-16BE (§5.2.19)."""

IEI_CONCAT_8BIT = 0x00
"""Concatenated short messages, 8-bit reference (3GPP TS 23.040 §9.2.3.24.1): ref, total, seq."""
IEI_CONCAT_16BIT = 0x08
"""Concatenated short messages, 16-bit reference (3GPP TS 23.040 §9.2.3.24.8): ref (2 octets), total, seq."""


class Concat(NamedTuple):
    """Which part of which message: the concatenation element of a user data header."""

    reference: int
    total: int
    seq: int
    """From 1 to `total`."""


def split_header(octets: bytes) -> tuple[Concat | None, bytes | None]:
    """(the concatenation element, the payload after the header) of octets that begin with a user data
    header (esm_class UDHI). The element is None when the header has none, or one that cannot be a part of a
    longer message (total 0 or 1, seq 0 or over total): then it is a message of its own. The payload is None
    when the header is longer than the octets."""
    if not octets or len(octets) <= octets[0]:
        return None, None
    header, payload = octets[1 : 1 + octets[0]], octets[1 + octets[0] :]
    found: Concat | None = None
    i = 0
    while i + 2 <= len(header):
        iei, length = header[i], header[i + 1]
        data = header[i + 2 : i + 2 + length]
        if len(data) < length:
            break  # a truncated element: nothing after it can be read
        if iei == IEI_CONCAT_8BIT and length == 3:
            found = Concat(data[0], data[1], data[2])
        elif iei == IEI_CONCAT_16BIT and length == 4:
            found = Concat((data[0] << 8) | data[1], data[2], data[3])
        i += 2 + length
    if found is not None and not (found.total > 1 and 1 <= found.seq <= found.total):
        found = None
    return found, payload


def decode(data_coding: int, payload: bytes) -> tuple[str | None, bool]:
    """(text, lossy) of a message's payload (without its header): None when the data_coding is not one we
    read or the octets cannot be its text at all; lossy when some of it was replaced (U+FFFD for broken
    UTF-16), so that the caller keeps the octets as well. Never raises."""
    text: str | None = None
    lossy = False
    if data_coding == DCS_UCS2:
        try:
            text = payload.decode("utf-16-be")
        except UnicodeDecodeError:  # a lone surrogate, or an odd octet at the end
            text, lossy = payload.decode("utf-16-be", "replace"), True
    else:
        try:
            if data_coding == DCS_GSM7:
                text = gsm7_text(payload)
            elif data_coding == DCS_ASCII:
                text = payload.decode("ascii")
            elif data_coding == DCS_LATIN1:
                text = payload.decode("latin-1")
        except (ValueError, IndexError):  # UnicodeDecodeError is a ValueError
            text = None
    if text is not None and "\x00" in text:  # not text, and PostgreSQL's text cannot hold it
        return None, False
    return text, lossy
