"""SDP offer/answer for one audio stream: the offer we put in an INVITE, answers as sipp, Asterisk and
FreeSWITCH write them, each negotiation rule of RFC 3264 we rely on, and a fuzz proving parse and
negotiate only ever fail with SdpError.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.errors import SdpError
from switchboard.voice.sip.sdp import PCMA, PCMU, Codec, Connection, Negotiated, RtpMap, negotiate, offer, parse


def sdp(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


SIPP_ANSWER = sdp(
    """v=0
o=sipp 53655765 2353687637 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20
a=sendrecv
"""
)

ASTERISK_ANSWER = sdp(
    """v=0
o=- 1234567 1234569 IN IP4 203.0.113.5
s=Asterisk
c=IN IP4 203.0.113.5
t=0 0
m=audio 17942 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
"""
)

FREESWITCH_ANSWER = sdp(
    """v=0
o=FreeSWITCH 1700000000 1700000001 IN IP4 203.0.113.9
s=FreeSWITCH
c=IN IP4 203.0.113.9
t=0 0
m=audio 24680 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=rtcp:24681 IN IP4 203.0.113.9
"""
)


def answer(media: str, *, session: str = "c=IN IP4 192.0.2.20\n") -> bytes:
    return sdp(f"v=0\no=- 1 1 IN IP4 192.0.2.20\ns=-\n{session}t=0 0\n{media}")


def test_offer_is_the_sdp_of_our_invite() -> None:
    assert offer(address="192.0.2.10", port=40000, session_id=4242) == sdp(
        """v=0
o=- 4242 4242 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
"""
    )


def test_offer_over_ipv6_with_other_choices() -> None:
    text = offer(
        address="2001:db8::10", port=5004, session_id=7, codecs=(PCMA,), telephone_event_pt=None, ptime=30
    ).decode()
    assert "o=- 7 7 IN IP6 2001:db8::10\r\n" in text and "c=IN IP6 2001:db8::10\r\n" in text
    assert "m=audio 5004 RTP/AVP 8\r\n" in text and "a=ptime:30\r\n" in text
    assert "telephone-event" not in text and "PCMU" not in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"address": "pbx.example.com"},
        {"port": 0},
        {"port": 70000},
        {"codecs": ()},
        {"codecs": (PCMU, Codec(0, "PCMU"))},
        {"telephone_event_pt": 8},
        {"codecs": (Codec(101, "opus", 48000),)},
        {"ptime": 0},
        {"direction": "both"},
    ],
)
def test_offer_refuses_what_no_peer_could_use(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"address": "192.0.2.10", "port": 40000, "session_id": 1, **kwargs}
    with pytest.raises(SdpError):
        offer(**args)  # type: ignore[arg-type]


def test_our_offer_parses_back() -> None:
    description = parse(offer(address="192.0.2.10", port=40000, session_id=4242))
    (audio,) = description.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == ("audio", 40000, "RTP/AVP", ("0", "8", "101"))
    assert audio.rtpmaps[101] == RtpMap("telephone-event", 8000)
    assert audio.fmtps == {101: "0-16"}
    assert (description.connection, description.origin.session_id) == (Connection("IP4", "192.0.2.10"), "4242")


def test_sipp_answer() -> None:
    assert negotiate(parse(SIPP_ANSWER)) == Negotiated(
        payload_type=0,
        codec_name="PCMU",
        clock_rate=8000,
        address="198.51.100.7",
        port=6000,
        telephone_event_pt=None,
        ptime=20,
        direction="sendrecv",
    )


def test_asterisk_answer_with_pcma_and_dtmf() -> None:
    result = negotiate(parse(ASTERISK_ANSWER))
    assert (result.payload_type, result.codec_name, result.telephone_event_pt) == (8, "PCMA", 101)
    assert (result.address, result.port, result.we_send, result.we_receive) == ("203.0.113.5", 17942, True, True)


def test_freeswitch_answer_with_rtcp_attribute() -> None:
    description = parse(FREESWITCH_ANSWER)
    assert ("rtcp", "24681 IN IP4 203.0.113.9") in description.media[0].attributes
    result = negotiate(description)
    assert (result.payload_type, result.codec_name, result.telephone_event_pt) == (0, "PCMU", 101)


def test_first_common_codec_in_the_answers_order() -> None:
    result = negotiate(parse(answer("m=audio 5000 RTP/AVP 18 8 0\na=rtpmap:18 G729/8000\n")))
    assert (result.payload_type, result.codec_name) == (8, "PCMA")
    only_pcma = negotiate(parse(answer("m=audio 5000 RTP/AVP 0 8\n")), offered=(PCMA,))
    assert only_pcma.codec_name == "PCMA"


def test_dynamic_payload_types_matched_by_name_without_case() -> None:
    media = "m=audio 5000 RTP/AVP 96 97\na=rtpmap:96 pcma/8000\na=rtpmap:97 Telephone-Event/8000\n"
    result = negotiate(parse(answer(media)))
    assert (result.payload_type, result.codec_name, result.telephone_event_pt) == (96, "PCMA", 97)


def test_a_codec_at_another_clock_rate_is_not_the_same_codec() -> None:
    with pytest.raises(SdpError, match="no codec in common"):
        negotiate(parse(answer("m=audio 5000 RTP/AVP 96\na=rtpmap:96 PCMU/16000\n")))


def test_telephone_event_at_another_rate_is_not_ours() -> None:
    media = "m=audio 5000 RTP/AVP 0 102\na=rtpmap:102 telephone-event/48000\n"
    assert negotiate(parse(answer(media))).telephone_event_pt is None


def test_connection_at_media_level_wins_and_session_level_is_the_fallback() -> None:
    media_level = negotiate(parse(answer("m=audio 5000 RTP/AVP 0\nc=IN IP4 192.0.2.99\n")))
    assert media_level.address == "192.0.2.99"
    assert negotiate(parse(answer("m=audio 5000 RTP/AVP 0\n"))).address == "192.0.2.20"
    multicast = parse(answer("m=audio 5000 RTP/AVP 0\nc=IN IP4 233.252.0.1/127\n"))
    assert multicast.media[0].connection == Connection("IP4", "233.252.0.1")
    with pytest.raises(SdpError, match="connection"):
        negotiate(parse(answer("m=audio 5000 RTP/AVP 0\n", session="")))


def test_ipv6_answer() -> None:
    result = negotiate(parse(answer("m=audio 5000 RTP/AVP 0\n", session="c=IN IP6 2001:db8::20\n")))
    assert result.address == "2001:db8::20"


@pytest.mark.parametrize(
    ("media", "session", "direction", "we_send", "we_receive"),
    [
        ("", "", "sendrecv", True, True),
        ("a=sendonly\n", "", "sendonly", False, True),
        ("a=recvonly\n", "", "recvonly", True, False),
        ("a=inactive\n", "", "inactive", False, False),
        ("", "a=inactive\n", "inactive", False, False),  # session level applies to every stream
        ("a=sendrecv\n", "a=inactive\n", "sendrecv", True, True),  # media level wins
    ],
)
def test_direction(media: str, session: str, direction: str, we_send: bool, we_receive: bool) -> None:
    data = answer(f"m=audio 5000 RTP/AVP 0\n{media}", session=f"c=IN IP4 192.0.2.20\n{session}")
    result = negotiate(parse(data))
    assert (result.direction, result.we_send, result.we_receive) == (direction, we_send, we_receive)


def test_old_style_hold_address_means_we_do_not_send() -> None:
    result = negotiate(parse(answer("m=audio 5000 RTP/AVP 0\n", session="c=IN IP4 0.0.0.0\n")))
    assert (result.direction, result.we_send) == ("sendrecv", False)  # RFC 3264 §8.4


def test_ptime_from_media_then_session_then_default() -> None:
    assert negotiate(parse(answer("m=audio 5000 RTP/AVP 0\na=ptime:30\n"))).ptime == 30
    assert negotiate(parse(answer("m=audio 5000 RTP/AVP 0\n", session="c=IN IP4 1.2.3.4\na=ptime:40\n"))).ptime == 40
    assert negotiate(parse(answer("m=audio 5000 RTP/AVP 0\n"))).ptime == 20


@pytest.mark.parametrize(
    ("media", "why"),
    [
        ("m=audio 0 RTP/AVP 0\n", "rejected"),  # RFC 3264 §6: port 0 declines the stream
        ("m=video 5000 RTP/AVP 31\n", "no audio"),
        ("", "no audio"),
        ("m=audio 5000 RTP/AVP 18\na=rtpmap:18 G729/8000\n", "no codec in common"),
        ("m=audio 5000 RTP/AVP 101\na=rtpmap:101 telephone-event/8000\n", "no codec in common"),
        ("m=audio 5000 RTP/SAVP 0\n", "RTP/AVP"),
        ("m=audio 5000 RTP/AVP x\n", "payload type"),
    ],
)
def test_unusable_answers(media: str, why: str) -> None:
    with pytest.raises(SdpError, match=why):
        negotiate(parse(answer(media)))


def test_video_before_audio_is_skipped() -> None:
    result = negotiate(parse(answer("m=video 0 RTP/AVP 31\nm=audio 5002 RTP/AVP 8\n")))
    assert (result.port, result.codec_name) == (5002, "PCMA")


def test_bare_lf_and_missing_s_and_t_lines_are_tolerated() -> None:
    data = b"v=0\no=- 1 1 IN IP4 192.0.2.20\nc=IN IP4 192.0.2.20\nm=audio 5000 RTP/AVP 0\n"
    assert negotiate(parse(data)).port == 5000


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "v=0"),
        (b"v=1\r\no=- 1 1 IN IP4 h\r\n", "v=0"),
        (b"o=- 1 1 IN IP4 h\r\nv=0\r\n", "v=0"),
        (b"v=0\r\nm=audio 5000 RTP/AVP 0\r\n", "o= line"),
        (b"v=0\r\no=- 1 IN IP4 h\r\n", "o= line"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\nq=unknown type\r\n", "bad SDP line"),  # RFC 4566 §5: ignore it whole
        (b"v=0\r\no=- 1 1 IN IP4 h\r\na line without equals\r\n", "bad SDP line"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IPX h\r\n", "c= line"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 99999 RTP/AVP 0\r\n", "m= line"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio RTP/AVP 0\r\n", "m= line"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n", "rtpmap"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:200 X/8000\r\n", "rtpmap"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\na=ptime:fast\r\n", "ptime"),
        (b"v=0\r\no=- 1 1 IN IP4 \xff\r\n", "UTF-8"),
    ],
)
def test_malformed_descriptions_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(SdpError, match=why):
        parse(data)


# --- fuzz ---------------------------------------------------------------------------------------------

SAMPLES = [SIPP_ANSWER, ASTERISK_ANSWER, FREESWITCH_ANSWER, offer(address="2001:db8::1", port=4000, session_id=1)]
_PIECES = [b"\r\n", b"\n", b"=", b":", b"/", b" ", b"0", b"99999999999999", b"a=", b"m=", b"c=", b"\xff", b"\x00"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(data)))
        piece = draw(st.sampled_from(_PIECES) | st.binary(min_size=1, max_size=3))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        if kind == "insert":
            data[at:at] = piece
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 12))]
        else:
            data[at : at + len(piece)] = piece
    return bytes(data)


def _exercise(data: bytes) -> None:
    try:
        result = negotiate(parse(data))
    except SdpError:
        return
    assert 0 <= result.payload_type <= 127 and 0 < result.port <= 65535 and result.ptime > 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes_only_raise_sdp_error(data: bytes) -> None:
    _exercise(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_answers_only_raise_sdp_error(data: bytes) -> None:
    _exercise(data)
