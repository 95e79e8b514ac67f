"""Each sipp scenario template, driven by a minimal hand-written SIP UAC over UDP (raw strings, no code of
ours), to prove it renders, loads, behaves as its name says and reports the outcome: the harness the SIP
trunk tests stand on. The answered call also carries RTP from our RtpStream through sipp's echo and back.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from switchboard.voice.sip.rtp import PT_PCMA, PT_PCMU, RtpClock, RtpStream
from tests.integration.sipp import REASONS, SippPeer, SippResult, check_digest, render

OFFER = (
    "v=0\r\n"
    "o=switchboard 1 1 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=ptime:20\r\n"
)


@dataclass
class Message:
    text: str
    first_line: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    @classmethod
    def parse(cls, data: bytes) -> Message:
        text = data.decode()
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        return cls(text=text, first_line=lines[0], headers=headers, body=body)

    @property
    def status(self) -> int | None:
        return int(self.first_line.split()[1]) if self.first_line.startswith("SIP/2.0 ") else None

    @property
    def method(self) -> str | None:
        return None if self.first_line.startswith("SIP/2.0") else self.first_line.split()[0]


class RawUac(asyncio.DatagramProtocol):
    """Just enough of a UAC to drive a scenario: one call, messages written by hand."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.peer: tuple[str, int] = ("127.0.0.1", 0)
        self.call_id = f"{random.getrandbits(64):x}@127.0.0.1"
        self.from_tag = f"{random.getrandbits(32):x}"
        self.cseq = 0
        self.branch = ""
        self.to = ""  # the To of the dialog, with the callee's tag, once known
        self.last_sent = b""

    @classmethod
    async def open(cls, peer: tuple[str, int]) -> RawUac:
        uac = cls()
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: uac, local_addr=("127.0.0.1", 0))
        uac.peer = peer
        return uac

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # not a subclass of it before 3.12
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.inbox.put_nowait(Message.parse(data))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- sending ---

    @property
    def uri(self) -> str:
        return f"sip:15005550000@{self.peer[0]}:{self.peer[1]}"

    def send(self, start_line: str, headers: list[str], body: str = "") -> None:
        assert self.transport is not None
        lines = [start_line, *headers, f"Content-Length: {len(body.encode())}", "", body]
        self.last_sent = "\r\n".join(lines).encode()
        self.transport.sendto(self.last_sent, self.peer)

    def resend(self) -> None:
        """The last message again, octet for octet: a retransmission."""
        assert self.transport is not None
        self.transport.sendto(self.last_sent, self.peer)

    def _common(self, method: str, cseq: int, branch: str, to: str) -> list[str]:
        return [
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:+15005550100@127.0.0.1>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
        ]

    def invite(self, *, media_port: int = 40000, extra: tuple[str, ...] = ()) -> None:
        self.cseq += 1
        self.branch = f"z9hG4bK{random.getrandbits(48):x}"
        headers = self._common("INVITE", self.cseq, self.branch, f"<{self.uri}>")
        headers += [f"Contact: <sip:switchboard@127.0.0.1:{self.port}>", *extra, "Content-Type: application/sdp"]
        self.send(f"INVITE {self.uri} SIP/2.0", headers, OFFER.format(port=media_port))

    def ack(self, final: Message) -> None:
        """ACK a final response: in its transaction for a non-2xx (RFC 3261 §17.1.1.3), a new one for a 2xx."""
        to = final.headers["to"]
        branch = self.branch if (final.status or 0) >= 300 else f"z9hG4bK{random.getrandbits(48):x}"
        self.send(f"ACK {self.uri} SIP/2.0", self._common("ACK", self.cseq, branch, to))
        self.to = to

    def bye(self) -> None:
        self.cseq += 1
        branch = f"z9hG4bK{random.getrandbits(48):x}"
        self.send(f"BYE {self.uri} SIP/2.0", self._common("BYE", self.cseq, branch, self.to))

    def cancel(self) -> None:
        """CANCEL the pending INVITE: its branch, CSeq number and To (RFC 3261 §9.1)."""
        self.send(f"CANCEL {self.uri} SIP/2.0", self._common("CANCEL", self.cseq, self.branch, f"<{self.uri}>"))

    def answer(self, request: Message, status: int = 200, reason: str = "OK") -> None:
        headers = [f"{name}: {request.headers[name.lower()]}" for name in ("Via", "From", "To", "Call-ID", "CSeq")]
        self.send(f"SIP/2.0 {status} {reason}", headers)

    # --- receiving ---

    async def receive(self, within: float = 5.0) -> Message:
        return await asyncio.wait_for(self.inbox.get(), within)

    async def final(self, within: float = 5.0) -> tuple[list[int], Message]:
        """The provisional statuses seen, and the final response."""
        provisional: list[int] = []
        while True:
            message = await self.receive(within)
            status = message.status
            assert status is not None, f"a request where a response was expected: {message.text}"
            if status >= 200:
                return provisional, message
            provisional.append(status)


@pytest.fixture
def sipp() -> Iterator[Callable[..., SippPeer]]:
    """Start sipp peers (`sipp("uas_reject", status=486)`); each is stopped at the end of the test."""
    peers: list[SippPeer] = []

    def start(name: str, **options: Any) -> SippPeer:
        peer = SippPeer(name, **options)
        peers.append(peer)
        return peer.start()

    yield start
    for peer in peers:
        peer.stop()


@pytest.fixture
async def uac() -> Any:
    made: list[RawUac] = []

    async def open_(peer: SippPeer) -> RawUac:
        made.append(await RawUac.open(peer.address))
        return made[-1]

    yield open_
    for u in made:
        u.close()


async def finished(peer: SippPeer, within: float = 15.0) -> SippResult:
    """sipp's result once it has ended by itself, after its calls."""
    return await asyncio.to_thread(peer.wait, within)


def sdp_media(message: Message) -> tuple[str, int, list[int]]:
    """The connection address, media port and payload types of an SDP body."""
    address = re.search(r"^c=IN IP4 (\S+)", message.body, re.M)
    media = re.search(r"^m=audio (\d+) RTP/AVP ([\d ]+)", message.body, re.M)
    assert address and media, message.text
    return address.group(1), int(media.group(1)), [int(pt) for pt in media.group(2).split()]


# --- uas_answer ---


async def test_answered_call_echoes_our_rtp_and_ends_on_our_bye(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_answer", payload_type=PT_PCMA, ring_ms=0)
    call = await uac(peer)
    clock = RtpClock()
    stream = await RtpStream.open(clock=clock, rng=random.Random(7), host="127.0.0.1", keep_received_seconds=600)
    try:
        call.invite(media_port=stream.local_address[1])
        provisional, ok = await call.final()
        assert provisional == [100, 180] and ok.status == 200, ok.text
        host, port, payload_types = sdp_media(ok)
        assert (host, port, payload_types) == ("127.0.0.1", peer.media_port, [PT_PCMA])
        call.ack(ok)

        stream.set_remote(host, port)
        frames = [bytes([i]) * 160 for i in range(25)]
        assert await asyncio.wait_for(stream.play(frames, PT_PCMA), 5.0) is True
        for _ in range(100):  # the echo follows within a few ms
            if stream.packets_received >= len(frames):
                break
            await asyncio.sleep(0.01)
        echoed = [r.packet for r in stream.received]
        assert [p.payload for p in echoed] == frames
        assert {p.payload_type for p in echoed} == {PT_PCMA}
        assert {p.ssrc for p in echoed} == {stream.ssrc}
        assert {r.source for r in stream.received} == {("127.0.0.1", peer.media_port)}

        call.bye()
        _, bye_ok = await call.final()
        assert bye_ok.status == 200 and "BYE" in bye_ok.headers["cseq"]
    finally:
        stream.close()
    result = await finished(peer)
    assert (result.exit_code, result.successful, result.failed) == (0, 1, 0), result.describe()
    assert [m.method for m in result.received()] == ["INVITE", "ACK", "BYE"]


async def test_answer_after_ringing_names_the_codec_asked_for(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_answer", ring_ms=300, payload_type=PT_PCMU)
    call = await uac(peer)
    loop = asyncio.get_running_loop()
    call.invite()
    assert (await call.receive()).status == 100
    assert (await call.receive()).status == 180
    rang = loop.time()
    ok = await call.receive()
    assert ok.status == 200
    assert loop.time() - rang >= 0.25
    assert sdp_media(ok)[2] == [PT_PCMU]
    assert "a=rtpmap:0 PCMU/8000" in ok.body
    call.ack(ok)
    call.bye()
    assert (await call.final())[1].status == 200
    result = await finished(peer)
    assert (result.successful, result.failed) == (1, 0), result.describe()


async def test_callee_hangs_up_first_with_a_bye_in_our_dialog(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_answer", hangup="peer", hold_ms=300)
    call = await uac(peer)
    call.invite()
    _, ok = await call.final()
    call.ack(ok)
    loop = asyncio.get_running_loop()
    acked = loop.time()
    bye = await call.receive(within=5.0)
    assert bye.method == "BYE", bye.text
    assert loop.time() - acked >= 0.25
    # the request reaches our Contact, and From/To are the dialog's seen from the callee (RFC 3261 §12.2.1.1)
    assert bye.first_line == f"BYE sip:switchboard@127.0.0.1:{call.port} SIP/2.0"
    assert bye.headers["call-id"] == call.call_id
    assert bye.headers["to"].endswith(f";tag={call.from_tag}")
    assert bye.headers["from"] == ok.headers["to"]
    call.answer(bye)
    result = await finished(peer)
    assert (result.exit_code, result.successful, result.failed) == (0, 1, 0), result.describe()
    assert [m.status for m in result.received() if m.status] == [200]


async def test_answered_call_fails_in_sipp_when_we_never_ack(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_answer", ack_timeout_ms=300)
    call = await uac(peer)
    call.invite()
    assert (await call.final())[1].status == 200
    result = await finished(peer)
    assert (result.successful, result.failed) == (0, 1), result.describe()
    assert result.exit_code == 1


# --- uas_reject ---


@pytest.mark.parametrize("status", [486, 480, 603, 403, 503])
async def test_rejection_with_each_final_status(sipp: Any, uac: Any, status: int) -> None:
    peer = sipp("uas_reject", status=status)
    call = await uac(peer)
    call.invite()
    provisional, final = await call.final()
    assert provisional == [100, 180]
    assert final.first_line == f"SIP/2.0 {status} {REASONS[status]}"
    assert final.headers["cseq"] == "1 INVITE" and ";tag=" in final.headers["to"]
    call.ack(final)
    result = await finished(peer)
    assert (result.exit_code, result.successful, result.failed) == (0, 1, 0), result.describe()
    acks = result.received("ACK")
    assert len(acks) == 1 and acks[0].header("Via") == final.headers["via"]


async def test_rejection_is_retransmitted_until_acked(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_reject", status=486, ack_timeout_ms=5_000)
    call = await uac(peer)
    call.invite()
    _, first = await call.final()
    again = await call.receive(within=2.0)  # T1 = 500 ms (RFC 3261 §17.2.1)
    assert again.first_line == first.first_line
    call.ack(again)
    result = await finished(peer)
    assert (result.successful, result.failed) == (1, 0), result.describe()


# --- uas_ring_until_cancel ---


async def test_ringing_until_our_cancel_ends_with_487(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_ring_until_cancel")
    call = await uac(peer)
    call.invite()
    assert (await call.receive()).status == 100
    assert (await call.receive()).status == 180
    assert call.inbox.empty()
    await asyncio.sleep(0.3)
    assert call.inbox.empty(), "it should ring, not answer"
    call.cancel()
    responses = {(m.status, m.headers["cseq"]): m for m in [await call.receive(), await call.receive()]}
    assert set(responses) == {(200, "1 CANCEL"), (487, "1 INVITE")}
    call.ack(responses[(487, "1 INVITE")])
    result = await finished(peer)
    assert (result.exit_code, result.successful, result.failed) == (0, 1, 0), result.describe()
    assert [m.method for m in result.received()] == ["INVITE", "CANCEL", "ACK"]


async def test_ringing_without_cancel_fails_in_sipp(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_ring_until_cancel", cancel_timeout_ms=300)
    call = await uac(peer)
    call.invite()
    assert (await call.receive()).status == 100
    result = await finished(peer)
    assert (result.successful, result.failed) == (0, 1), result.describe()


# --- uas_silent ---


async def test_silent_peer_answers_nothing_not_even_retransmissions(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_silent", silence_ms=1_200)
    call = await uac(peer)
    call.invite()
    await asyncio.sleep(0.5)
    call.resend()  # the same INVITE again, as Timer A would have it (RFC 3261 §17.1.1.2)
    with pytest.raises(TimeoutError):
        await call.receive(within=1.0)
    result = await finished(peer)
    assert len(result.received("INVITE")) == 2, result.describe()
    assert result.sent() == []
    assert (result.successful, result.failed) == (1, 0), result.describe()


# --- uas_auth ---


def authorization(challenge: Message, *, uri: str, username: str, password: str, cnonce: str = "") -> str:
    """The credentials for a challenge, computed here by hand (RFC 2617 §3.2.2)."""
    header = challenge.headers.get("www-authenticate") or challenge.headers["proxy-authenticate"]
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', header))
    realm, nonce = params["realm"], params["nonce"]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = md5(f"{username}:{realm}:{password}"), md5(f"INVITE:{uri}")
    fields = f'username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm=MD5'
    if "qop" in params:
        response = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        return f'Digest {fields}, response="{response}", qop=auth, nc=00000001, cnonce="{cnonce}"'
    return f'Digest {fields}, response="{md5(f"{ha1}:{nonce}:{ha2}")}"'


async def authenticated_call(call: RawUac, *, password: str, cnonce: str = "") -> Message:
    """INVITE, the challenge, its ACK, the INVITE again with credentials: the final response to that."""
    call.invite()
    _, challenge = await call.final()
    assert challenge.status in (401, 407), challenge.text
    call.ack(challenge)
    name = "Authorization" if challenge.status == 401 else "Proxy-Authorization"
    credentials = authorization(challenge, uri=call.uri, username="switchboard", password=password, cnonce=cnonce)
    call.invite(extra=(f"{name}: {credentials}",))
    return (await call.final())[1]


@pytest.mark.parametrize("qop", ["", "auth"])
async def test_401_then_right_credentials_are_answered(sipp: Any, uac: Any, qop: str) -> None:
    peer = sipp("uas_auth", challenge_status=401, qop=qop)
    call = await uac(peer)
    ok = await authenticated_call(call, password="secret", cnonce="0a4f113b")
    assert ok.status == 200, ok.text
    call.ack(ok)
    call.bye()
    assert (await call.final())[1].status == 200
    result = await finished(peer)
    assert (result.exit_code, result.successful, result.failed) == (0, 1, 0), result.describe()
    challenge = result.sent(401)[0].header("WWW-Authenticate") or ""
    assert challenge.startswith('Digest realm="switchboard.test"') and ("qop" in challenge) == bool(qop)
    invites = result.received("INVITE")
    assert check_digest(invites[1], username="switchboard", password="secret")


async def test_401_then_wrong_credentials_get_403_and_fail(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_auth", challenge_status=401)
    call = await uac(peer)
    final = await authenticated_call(call, password="guessed")
    assert final.status == 403
    call.ack(final)
    result = await finished(peer)
    assert (result.successful, result.failed) == (0, 1), result.describe()
    assert not check_digest(result.received("INVITE")[1], username="switchboard", password="secret")


@pytest.mark.parametrize("password", ["secret", "guessed"])
async def test_407_is_answered_and_the_trace_tells_right_credentials_from_wrong(
    sipp: Any, uac: Any, password: str
) -> None:
    peer = sipp("uas_auth", challenge_status=407)
    call = await uac(peer)
    ok = await authenticated_call(call, password=password)
    assert ok.status == 200  # sipp cannot check a Proxy-Authorization: the trace is checked below
    call.ack(ok)
    call.bye()
    await call.final()
    result = await finished(peer)
    assert (result.successful, result.failed) == (1, 0), result.describe()
    assert result.sent(407)[0].header("Proxy-Authenticate") is not None
    retried = result.received("INVITE")[1]
    assert check_digest(retried, username="switchboard", password="secret") is (password == "secret")


async def test_407_retry_without_credentials_gets_403(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_auth", challenge_status=407)
    call = await uac(peer)
    call.invite()
    _, challenge = await call.final()
    call.ack(challenge)
    call.invite()
    _, final = await call.final()
    assert final.status == 403
    call.ack(final)
    result = await finished(peer)
    assert (result.successful, result.failed) == (0, 1), result.describe()


# --- the harness itself ---


def test_every_template_renders_without_placeholders_left() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("uas_answer", {}),
        ("uas_answer", {"hangup": "peer"}),
        ("uas_reject", {"status": 480}),
        ("uas_ring_until_cancel", {}),
        ("uas_silent", {}),
        ("uas_auth", {"challenge_status": 407, "qop": "auth"}),
        ("uas_by_number", {}),
    ]
    for name, options in cases:
        text = render(name, **options)
        assert "{" not in text and "}" not in text, name
        assert text.count("<scenario") == 1 and text.rstrip().endswith("</scenario>")
    with pytest.raises(ValueError):
        render("uas_auth", challenge_status=403)


def test_without_sipp_on_path_the_test_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.skip.Exception, match="sip-tester"):
        SippPeer("uas_silent").start()


async def test_several_calls_at_once_are_counted_apart(sipp: Any, uac: Any) -> None:
    peer = sipp("uas_reject", status=486, calls=3)
    calls = [await uac(peer) for _ in range(3)]
    for call in calls:
        call.invite()
    for call in calls:
        _, final = await call.final()
        assert final.status == 486
        call.ack(final)
    result = await finished(peer)
    assert (result.exit_code, result.successful, result.failed) == (0, 3, 0), result.describe()
