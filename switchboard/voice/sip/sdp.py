"""SDP for one audio stream (RFC 4566), the offer/answer rules a UAC needs (RFC 3264) and telephone-event
(RFC 4733): `offer` writes the SDP of our INVITE, `parse` reads the peer's answer, `negotiate` says what to
send where. Pure: no I/O, no clock.

Codecs are named here by `Codec(payload_type, name, clock_rate)`; PCMU (0) and PCMA (8) are the static
G.711 types of RFC 3551 §6. This module does not know how to encode audio.

Strictness. `parse` refuses what it cannot read safely: bytes that are not UTF-8 (RFC 4566 §5's default
charset), a first line that is not `v=0`, a missing or malformed `o=` line, a line that is not `<letter>=`,
a type letter RFC 4566 does not define (§5: such a description MUST be ignored as a whole), and malformed
`c=`, `m=`, `a=rtpmap`, `a=ptime` lines. Tolerated, as real peers send them: bare LF line ends (§5 asks
parsers to accept them), no `s=` or `t=` line, attributes we do not know (kept), and `c=` at either level.

Errors. `SdpError` is the only exception raised, whatever the bytes: for a malformed description, and
from `negotiate` when the answer has no audio stream, rejects it (port 0, RFC 3264 §6), has no codec in
common with the offer, has no connection address, or uses a transport other than RTP/AVP. It subclasses
ValueError.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from switchboard.errors import SdpError

__all__ = [
    "DIRECTIONS",
    "PCMA",
    "PCMU",
    "Codec",
    "Connection",
    "MediaDescription",
    "Negotiated",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "negotiate",
    "offer",
    "parse",
]


class Codec(NamedTuple):
    """An audio codec as SDP names it: its payload type in our offer, its encoding name, its clock rate."""

    payload_type: int
    name: str
    clock_rate: int = 8000


PCMU = Codec(0, "PCMU")
"""G.711 mu-law, static payload type 0 (RFC 3551 §6)."""
PCMA = Codec(8, "PCMA")
"""G.711 A-law, static payload type 8 (RFC 3551 §6)."""

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
"""The direction attributes (RFC 4566 §6; RFC 3264 §5.1); sendrecv when none is given."""
DEFAULT_PTIME = 20
"""Packetisation when the answer names none: RFC 3551 §4.5's default for G.711 frames."""
TELEPHONE_EVENTS = "0-16"
"""DTMF digits 0-9, *, #, A-D and flash (RFC 4733 §3.2, §7.1.1)."""
_STATIC = {0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000),
           18: ("G729", 8000)}  # fmt: skip
"""Static payload types a peer may use without an rtpmap line (RFC 3551 §6), those a trunk offers."""
_TYPES = frozenset("vosiuepcbtrzkam")
"""Every line type RFC 4566 §5 defines."""
_DIGITS = re.compile(r"[0-9]{1,10}")
_PORT = re.compile(r"([0-9]{1,5})(?:/([0-9]{1,5}))?")
_RTPMAP = re.compile(r"([0-9]{1,3})[ \t]+([^/\s]+)/([0-9]{1,6})(?:/([0-9]{1,2}))?")
_PTIME = re.compile(r"([0-9]{1,4})(?:\.[0-9]{1,4})?")
_TELEPHONE_EVENT = "telephone-event"


@dataclass(frozen=True, slots=True)
class Origin:
    """The `o=` line (RFC 4566 §5.2)."""

    username: str
    session_id: str
    session_version: str
    address_type: str
    address: str


@dataclass(frozen=True, slots=True)
class Connection:
    """A `c=` line (RFC 4566 §5.7): IP4 or IP6 and the address, without a multicast /ttl suffix."""

    address_type: str
    address: str


@dataclass(frozen=True, slots=True)
class RtpMap:
    """An `a=rtpmap` line (RFC 4566 §6): encoding name as written, clock rate, channels (None: one)."""

    encoding: str
    clock_rate: int
    channels: int | None = None


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """An `m=` section (RFC 4566 §5.14) and its lines; `connection`, `direction`, `ptime` are the section's
    own (None when it has none: the session level's then apply)."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: Connection | None = None
    rtpmaps: dict[int, RtpMap] = field(default_factory=dict)
    fmtps: dict[int, str] = field(default_factory=dict)
    direction: str | None = None
    ptime: int | None = None
    attributes: tuple[tuple[str, str | None], ...] = ()
    """Every `a=` line of the section in order, as (name, value or None for a flag)."""


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A parsed SDP body: session-level lines and the media sections in order."""

    origin: Origin
    session_name: str
    connection: Connection | None
    direction: str | None
    ptime: int | None
    media: tuple[MediaDescription, ...]
    attributes: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What a call sends, read from the answer: the codec (the answer's payload type for it, which is the
    one to put in our RTP, RFC 3264 §6.1), where to send it, the telephone-event payload type if the
    answer accepted RFC 4733 events, the packet time the answerer wants, and its direction attribute."""

    payload_type: int
    codec_name: str
    clock_rate: int
    address: str
    port: int
    telephone_event_pt: int | None
    ptime: int
    direction: str
    """The answerer's view: "recvonly" means it only receives, so we send and should expect nothing."""

    @property
    def we_send(self) -> bool:
        """Whether we send RTP: the answerer receives, and its address is not the old 0.0.0.0 hold
        (RFC 3264 §8.4)."""
        unspecified = self.address in ("0.0.0.0", "::")
        return self.direction in ("sendrecv", "recvonly") and not unspecified

    @property
    def we_receive(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")


def offer(
    *,
    address: str,
    port: int,
    session_id: int,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    telephone_event_pt: int | None = 101,
    ptime: int = DEFAULT_PTIME,
    direction: str = "sendrecv",
) -> bytes:
    """The SDP offer of an INVITE: one audio stream at `address`:`port` (IPv4 or IPv6) offering `codecs` in
    order of preference, then telephone-event at `telephone_event_pt` (None: no DTMF events)."""
    address_type = _address_type(address)
    types = [codec.payload_type for codec in codecs]
    if telephone_event_pt is not None:
        if not 96 <= telephone_event_pt <= 127:  # dynamic range, RFC 3551 §6
            raise SdpError(f"telephone-event payload type {telephone_event_pt} is not dynamic (96-127)")
        types.append(telephone_event_pt)
    if not codecs or len(set(types)) != len(types) or not all(0 <= pt <= 127 for pt in types):
        raise SdpError(f"payload types {types} must be one or more distinct values in 0-127")
    if not 0 < port <= 65535 or session_id < 0 or ptime <= 0 or direction not in DIRECTIONS:
        raise SdpError(f"bad offer: port {port}, session_id {session_id}, ptime {ptime}, direction {direction}")
    lines = [
        "v=0",
        f"o=- {session_id} {session_id} IN {address_type} {address}",  # "-": no user id (RFC 4566 §5.2)
        "s=-",
        f"c=IN {address_type} {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(map(str, types))}",
    ]
    lines += [f"a=rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}" for codec in codecs]
    if telephone_event_pt is not None:
        lines.append(f"a=rtpmap:{telephone_event_pt} {_TELEPHONE_EVENT}/8000")
        lines.append(f"a=fmtp:{telephone_event_pt} {TELEPHONE_EVENTS}")
    lines += [f"a=ptime:{ptime}", f"a={direction}", ""]
    return "\r\n".join(lines).encode("utf-8")


def _address_type(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        raise SdpError(f"{address!r} is not an IP address") from None


def parse(data: bytes) -> SessionDescription:
    """Read an SDP body; see the module docstring for what is refused and tolerated."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError(f"SDP is not UTF-8 (at byte {exc.start})") from None
    lines = [line for line in re.split(r"\r?\n", text) if line]
    if not lines or lines[0].rstrip() != "v=0":
        raise SdpError("SDP does not start with v=0")
    session = _Section()
    sections: list[_Section] = []
    origin: Origin | None = None
    name = ""
    for line in lines[1:]:
        kind, equals, value = line[:1], line[1:2], line[2:]
        if equals != "=" or kind not in _TYPES:
            raise SdpError(f"bad SDP line {line[:60]!r}")
        current = sections[-1] if sections else session
        if kind == "m":
            sections.append(_Section(media=_media_line(value)))
        elif kind == "o" and not sections:
            origin = _origin(value)
        elif kind == "s" and not sections:
            name = value
        elif kind == "c":
            current.connection = _connection(value)
        elif kind == "a":
            current.attribute(value)
    if origin is None:
        raise SdpError("SDP has no o= line")
    return SessionDescription(
        origin,
        name,
        session.connection,
        session.direction,
        session.ptime,
        tuple(section.build() for section in sections),
        tuple(session.attributes),
    )


class _Section:
    """The lines of one level (session or media) while they are read."""

    def __init__(self, media: tuple[str, int, str, tuple[str, ...]] | None = None) -> None:
        self.media = media
        self.connection: Connection | None = None
        self.rtpmaps: dict[int, RtpMap] = {}
        self.fmtps: dict[int, str] = {}
        self.direction: str | None = None
        self.ptime: int | None = None
        self.attributes: list[tuple[str, str | None]] = []

    def attribute(self, text: str) -> None:
        name, colon, value = text.strip().partition(":")
        self.attributes.append((name, value if colon else None))
        if name in DIRECTIONS and not colon:
            self.direction = name
        elif name == "rtpmap":
            match = _RTPMAP.fullmatch(value.strip())
            if match is None or int(match[1]) > 127:
                raise SdpError(f"bad rtpmap {value[:60]!r}")
            channels = int(match[4]) if match[4] else None
            self.rtpmaps.setdefault(int(match[1]), RtpMap(match[2], int(match[3]), channels))
        elif name == "fmtp":
            pt, _, params = value.partition(" ")
            if _DIGITS.fullmatch(pt):
                self.fmtps.setdefault(int(pt), params.strip())
        elif name == "ptime":
            match = _PTIME.fullmatch(value.strip())
            if match is None or int(match[1]) == 0:
                raise SdpError(f"bad ptime {value[:20]!r}")
            self.ptime = int(match[1])

    def build(self) -> MediaDescription:
        assert self.media is not None
        media, port, proto, formats = self.media
        return MediaDescription(
            media, port, proto, formats, self.connection, self.rtpmaps, self.fmtps, self.direction, self.ptime,
            tuple(self.attributes),
        )  # fmt: skip


def _origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6 or parts[3] != "IN" or parts[4] not in ("IP4", "IP6"):
        raise SdpError(f"bad o= line {value[:80]!r}")
    return Origin(parts[0], parts[1], parts[2], parts[4], parts[5])


def _connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value[:80]!r}")
    address = parts[2].split("/", 1)[0]  # a multicast address carries /ttl[/count] (RFC 4566 §5.7)
    if not address:
        raise SdpError(f"bad c= address {value[:80]!r}")
    return Connection(parts[1], address)


def _media_line(value: str) -> tuple[str, int, str, tuple[str, ...]]:
    parts = value.split()
    port = _PORT.fullmatch(parts[1]) if len(parts) >= 3 else None
    if port is None or int(port[1]) > 65535:
        raise SdpError(f"bad m= line {value[:80]!r}")
    return parts[0], int(port[1]), parts[2], tuple(parts[3:])


def negotiate(answer: SessionDescription, *, offered: Sequence[Codec] = (PCMU, PCMA)) -> Negotiated:
    """What to send, from the answer to an offer of `offered`: the first audio stream, its first codec (in
    the answer's order) that was offered, matched by encoding name without case and clock rate (RFC 3264
    §6.1), and the connection address of the stream or else the session."""
    audio = next((m for m in answer.media if m.media.lower() == "audio"), None)
    if audio is None:
        raise SdpError("the answer has no audio stream")
    if audio.port == 0:
        raise SdpError("the answer rejected the audio stream (port 0)")
    if audio.proto.upper() != "RTP/AVP":
        raise SdpError(f"the answer's audio transport {audio.proto!r} is not RTP/AVP")
    wanted = {(codec.name.lower(), codec.clock_rate): codec for codec in offered}
    chosen: tuple[int, Codec] | None = None
    telephone_event: int | None = None
    for fmt in audio.formats:
        if not _DIGITS.fullmatch(fmt) or int(fmt) > 127:
            raise SdpError(f"bad RTP payload type {fmt[:10]!r} in the answer")
        pt = int(fmt)
        rtpmap = audio.rtpmaps.get(pt)
        name, rate = (rtpmap.encoding, rtpmap.clock_rate) if rtpmap else _STATIC.get(pt, ("", 0))
        if name.lower() == _TELEPHONE_EVENT and rate == 8000:
            telephone_event = pt if telephone_event is None else telephone_event
        elif chosen is None and (name.lower(), rate) in wanted:
            chosen = (pt, wanted[name.lower(), rate])
    if chosen is None:
        raise SdpError(f"no codec in common: answer has {list(audio.formats)}, offer had {[c.name for c in offered]}")
    connection = audio.connection or answer.connection
    if connection is None:
        raise SdpError("the answer gives no connection address for audio")
    pt, codec = chosen
    return Negotiated(
        payload_type=pt,
        codec_name=codec.name,
        clock_rate=codec.clock_rate,
        address=connection.address,
        port=audio.port,
        telephone_event_pt=telephone_event,
        ptime=audio.ptime or answer.ptime or DEFAULT_PTIME,
        direction=audio.direction or answer.direction or "sendrecv",
    )
