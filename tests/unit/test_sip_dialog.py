"""Outgoing calls (dialog.py) through a SipTrunk against a fake UAS written in the test, on the loopback,
with shrunken timers: what the far end sees of each call and the CallResult the dialer gets."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytest

from switchboard.domain.clock import Clock, SystemClock
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.errors import SipTrunkError
from switchboard.voice.sip.message import Headers, Request, Response, new_branch, parse, response_to
from switchboard.voice.sip.rtp import RtpClock, RtpStream
from switchboard.voice.sip.transaction import Timers
from switchboard.voice.sip.trunk import NumberFormat, SipTrunk, SipTrunkSettings, format_number
from switchboard.voice.trunk import CallResult, OutboundCall, StopReason
from tests.clock import FakeClock

FAST = Timers(t1=0.01, t2=0.08, t4=0.1, d=0.2)
RNG = random.Random(11)


def tone(seconds: float) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def answer_sdp(port: int, *formats: tuple[int, str]) -> bytes:
    pts = " ".join(str(pt) for pt, _ in formats)
    maps = "".join(f"a=rtpmap:{pt} {name}/8000\r\n" for pt, name in formats)
    return (
        f"v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pts}\r\n{maps}a=ptime:20\r\n"
    ).encode()


class Sink(asyncio.DatagramProtocol):
    """An RTP receiver: counts what arrives."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])


@dataclass
class FakeUas(asyncio.DatagramProtocol):
    """The far end of the calls: every request it gets is kept, and the test answers them by hand."""

    received: list[tuple[Request | Response, tuple[str, int]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((parse(data), addr))
        self.changed.set()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def requests(self, method: str) -> list[Request]:
        return [m for m, _ in self.received if isinstance(m, Request) and m.method == method]

    def responses(self, status: int | None = None) -> list[Response]:
        return [m for m, _ in self.received if isinstance(m, Response) and status in (None, m.status)]

    def methods(self) -> list[str]:
        return [m.method if isinstance(m, Request) else str(m.status) for m, _ in self.received]

    async def expect(self, method: str, index: int = 0, within: float = 3.0) -> Request:
        """The `index`-th request of `method` (0: the first), waiting for it to come."""
        async with asyncio.timeout(within):
            while len(self.requests(method)) <= index:
                self.changed.clear()
                await self.changed.wait()
        return self.requests(method)[index]

    async def expect_cseq(self, method: str, number: int, within: float = 3.0) -> Request:
        """The first request of `method` with CSeq `number`: with T1 at 10 ms, what `expect(method, 1)` gets
        may be a retransmission of the first one rather than the next request."""
        async with asyncio.timeout(within):
            while not (found := [r for r in self.requests(method) if r.cseq.number == number]):
                self.changed.clear()
                await self.changed.wait()
        return found[0]

    async def expect_response(self, status: int, within: float = 3.0) -> Response:
        async with asyncio.timeout(within):
            while not self.responses(status):
                self.changed.clear()
                await self.changed.wait()
        return self.responses(status)[0]

    def source(self, request: Request) -> tuple[str, int]:
        return next(addr for m, addr in self.received if m is request)

    def reply(
        self,
        request: Request,
        status: int,
        reason: str,
        *,
        tag: str | None = "uas1",
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        contact: str | None = None,
    ) -> Response:
        extra = list(headers or [])
        if 200 <= status < 300 and request.method == "INVITE":
            extra.append(("Contact", f"<{contact or f'sip:uas@127.0.0.1:{self.port}'}>"))
        if body:
            extra.append(("Content-Type", "application/sdp"))
        response = response_to(request, status, reason, to_tag=tag if status > 100 else None, body=body,
                               extra_headers=extra)  # fmt: skip
        self.send(response.encode(), self.source(request))
        return response

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    def in_dialog(
        self, invite: Request, method: str, cseq: int, *, from_tag: str = "uas1", body: bytes = b"", branch: str = ""
    ) -> bytes:
        """A request of ours in the call `invite` set up: From is its To (with our tag), To its From."""
        to = invite.headers.get("From")
        headers = Headers(
            [
                ("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch or new_branch(RNG)}"),
                ("From", f"<{invite.to_addr.uri}>;tag={from_tag}"),
                ("To", to or ""),
                ("Call-ID", invite.call_id),
                ("CSeq", f"{cseq} {method}"),
                ("Contact", f"<sip:uas@127.0.0.1:{self.port}>"),
                ("Max-Forwards", "70"),
            ]
        )
        if body:
            headers.add("Content-Type", "application/sdp")
        return Request(method, _contact_uri(invite), headers, body).encode()


def _contact_uri(request: Request) -> str:
    match = re.search(r"<([^>]+)>", request.headers.get("Contact") or "")
    assert match, request.headers
    return match.group(1)


@dataclass
class Harness:
    uas: FakeUas
    rtp_clock: RtpClock
    trunks: list[SipTrunk] = field(default_factory=list)
    streams: list[RtpStream] = field(default_factory=list)
    sinks: list[Sink] = field(default_factory=list)

    async def trunk(self, *, clock: Clock | None = None, resolve: Any = None, **settings: Any) -> SipTrunk:
        async def open_media(**kwargs: Any) -> RtpStream:
            stream = await RtpStream.open(**kwargs, keep_received_seconds=600)
            self.streams.append(stream)
            return stream

        options: dict[str, Any] = {"host": "127.0.0.1", "port": self.uas.port, "bind_host": "127.0.0.1"}
        trunk = SipTrunk(
            name="t1",
            settings=SipTrunkSettings(**{**options, **settings}),
            clock=clock or SystemClock(),
            rtp_clock=self.rtp_clock,
            rng=random.Random(3),
            timers=FAST,
            open_media=open_media,
            **({"resolve": resolve} if resolve is not None else {}),
        )
        await trunk.start()
        self.trunks.append(trunk)
        return trunk

    async def sink(self) -> Sink:
        _, sink = await asyncio.get_running_loop().create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        self.sinks.append(sink)
        return sink

    async def dial(
        self, trunk: SipTrunk, *, audio: bytes = b"", ring_timeout: float = 5.0, answered: list[int] | None = None
    ) -> tuple[OutboundCall, asyncio.Task[CallResult]]:
        call = OutboundCall(call_id=1, e164="+15005550000", caller="+1 555 1234", audio=audio,
                            ring_timeout=ring_timeout)  # fmt: skip
        hook: Callable[[int], None] = answered.append if answered is not None else lambda _: None
        return call, asyncio.create_task(trunk.dial(call, on_answered=hook))


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    loop = asyncio.get_running_loop()
    transport, uas = await loop.create_datagram_endpoint(FakeUas, local_addr=("127.0.0.1", 0))
    harness = Harness(uas=uas, rtp_clock=RtpClock())
    yield harness
    for trunk in harness.trunks:
        await trunk.stop()
    await harness.rtp_clock.stop()
    for sink in harness.sinks:
        assert sink.transport is not None
        sink.transport.close()
    transport.close()


async def result_of(task: asyncio.Task[CallResult], within: float = 3.0) -> CallResult:
    return await asyncio.wait_for(task, within)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def answer_call(h: Harness, invite: Request, sink: Sink, *, pt: int = 0, name: str = "PCMU") -> Response:
    h.uas.reply(invite, 180, "Ringing")
    return h.uas.reply(invite, 200, "OK", body=answer_sdp(sink.port, (pt, name)))


# --- the INVITE ---


async def test_invite_offers_g711_and_dtmf_from_the_caller_to_the_number_at_the_trunk(h: Harness) -> None:
    trunk = await h.trunk(caller_id_format=NumberFormat.E164, from_domain="example.com")
    _, task = await h.dial(trunk)
    invite = await h.uas.expect("INVITE")
    assert invite.uri == f"sip:+15005550000@127.0.0.1:{h.uas.port}"
    assert invite.to_addr.uri == invite.uri and invite.to_addr.tag is None
    assert invite.from_addr.uri == "sip:+15551234@example.com" and invite.from_addr.tag
    assert invite.headers.get("Max-Forwards") == "70" and invite.headers.get("User-Agent") == "Switchboard"
    via = invite.vias[0]
    assert via.branch and via.branch.startswith("z9hG4bK") and "rport" in via.params
    assert (via.host, via.port) == ("127.0.0.1", trunk.transport.port if trunk.transport else None)
    body = invite.body.decode()
    assert "m=audio " in body and " RTP/AVP 0 8 101" in body
    assert "a=rtpmap:101 telephone-event/8000" in body and "c=IN IP4 127.0.0.1" in body
    media_port = int(re.search(r"m=audio (\d+)", body).group(1))  # type: ignore[union-attr]
    assert media_port % 2 == 0 and 10000 <= media_port <= 20000
    h.uas.reply(invite, 603, "Decline")
    await result_of(task)


async def test_caller_id_as_given_is_escaped_and_digits_format_drops_the_plus(h: Harness) -> None:
    trunk = await h.trunk(number_format=NumberFormat.DIGITS, dial_prefix="99")
    _, task = await h.dial(trunk)
    invite = await h.uas.expect("INVITE")
    assert invite.uri.startswith("sip:9915005550000@")
    assert invite.from_addr.uri.startswith("sip:+1%20555%201234@")
    h.uas.reply(invite, 486, "Busy Here")
    await result_of(task)


# --- answered calls ---


async def test_answered_call_plays_the_audio_then_hangs_up(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    answered: list[int] = []
    _, task = await h.dial(trunk, audio=tone(0.2), answered=answered)
    invite = await h.uas.expect("INVITE")
    await answer_call(h, invite, sink)
    ack = await h.uas.expect("ACK")
    bye = await h.uas.expect("BYE")
    h.uas.reply(bye, 200, "OK")
    result = await result_of(task)

    assert (result.status, result.reason, result.stopped) == (CallStatus.ANSWERED, CallReason.NA, False)
    assert result.call_time is not None and result.answer_time is not None
    assert result.call_time <= result.answer_time <= result.end_time and answered == [result.answer_time]
    assert result.end_time - result.answer_time >= 180  # 10 frames of 20 ms were played first
    assert len(sink.packets) == 10 and all(len(p) == 12 + 160 and p[1] & 0x7F == 0 for p in sink.packets)
    # the ACK of a 2xx: a new branch, the INVITE's CSeq number, to the Contact (§13.2.2.4)
    assert ack.uri == f"sip:uas@127.0.0.1:{h.uas.port}" and ack.cseq.number == invite.cseq.number
    assert ack.vias[0].branch != invite.vias[0].branch and ack.to_addr.tag == "uas1"
    assert bye.cseq.number == invite.cseq.number + 1 and bye.to_addr.tag == "uas1"
    assert bye.from_addr.tag == invite.from_addr.tag and bye.call_id == invite.call_id
    assert port_is_free(h.streams[0].local_address[1])


async def test_a_lost_ack_is_sent_again_for_each_retransmitted_200(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    _, task = await h.dial(trunk, audio=tone(0.3))
    invite = await h.uas.expect("INVITE")
    ok = await answer_call(h, invite, sink)
    first = await h.uas.expect("ACK")
    h.uas.send(ok.encode(), h.uas.source(invite))  # as if our ACK never arrived
    h.uas.send(ok.encode(), h.uas.source(invite))
    third = await h.uas.expect("ACK", 2)
    assert first == third  # the same ACK each time
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    assert (await result_of(task)).status is CallStatus.ANSWERED


async def test_calls_playing_the_same_audio_share_one_encoded_copy(h: Harness) -> None:
    # The dialer hands every call of a request the same PCM; encoded per call, 500 calls of a 10-minute
    # campaign would hold 500 copies (~6 MB each) and spend ~30 ms of the event loop each on answering.
    trunk = await h.trunk()
    sink = await h.sink()
    pcm = tone(60.0)  # 3,000 frames: ~0.6 MB once encoded and framed
    calls = [await h.dial(trunk, audio=pcm) for _ in range(8)]
    async with asyncio.timeout(3):
        while len({r.call_id for r in h.uas.requests("INVITE")}) < 8:
            h.uas.changed.clear()
            await h.uas.changed.wait()
    invites = list({r.call_id: r for r in reversed(h.uas.requests("INVITE"))}.values())
    await asyncio.sleep(0.05)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for invite in invites:
            h.uas.reply(invite, 200, "OK", body=answer_sdp(sink.port, (0, "PCMU")))
        await h.uas.expect("ACK", 7)
        await asyncio.sleep(0.1)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert all(stream.playing for stream in h.streams)
    assert grown < 2_000_000, f"{grown / 1e6:.1f} MB for 8 calls of one audio"
    for call, _ in calls:
        call.request_stop(StopReason.CANCEL)
    for index in range(8):
        h.uas.reply(await h.uas.expect("BYE", index), 200, "OK")
    for _, task in calls:
        assert (await result_of(task)).stopped


async def test_far_end_bye_is_answered_and_stops_the_audio(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    _, task = await h.dial(trunk, audio=tone(5.0))
    invite = await h.uas.expect("INVITE")
    await answer_call(h, invite, sink)
    await h.uas.expect("ACK")
    await asyncio.sleep(0.1)
    h.uas.send(h.uas.in_dialog(invite, "BYE", 1), h.uas.source(invite))
    ok = await h.uas.expect_response(200)
    result = await result_of(task)
    assert ok.cseq.method == "BYE"
    assert (result.status, result.reason) == (CallStatus.ANSWERED, CallReason.CALLER_HANG_UP)
    assert result.answer_time is not None and 50 <= result.end_time - result.answer_time < 1000
    sent = len(sink.packets)
    await asyncio.sleep(0.1)
    assert len(sink.packets) == sent < 60  # the audio stopped with the BYE
    assert h.uas.requests("BYE") == [] and port_is_free(h.streams[0].local_address[1])


async def test_in_dialog_request_with_another_tag_gets_481(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    call, task = await h.dial(trunk, audio=tone(5.0))
    invite = await h.uas.expect("INVITE")
    await answer_call(h, invite, sink)
    await h.uas.expect("ACK")
    h.uas.send(h.uas.in_dialog(invite, "BYE", 1, from_tag="intruder"), h.uas.source(invite))
    assert (await h.uas.expect_response(481)).cseq.method == "BYE"
    assert not task.done()
    call.request_stop(StopReason.CANCEL)
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    result = await result_of(task)
    assert result.stopped and result.answer_time is not None


async def test_stop_while_answered_sends_bye(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    call, task = await h.dial(trunk, audio=tone(5.0))
    invite = await h.uas.expect("INVITE")
    await answer_call(h, invite, sink)
    await h.uas.expect("ACK")
    call.request_stop(StopReason.CANCEL)
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    result = await result_of(task)
    assert result.stopped and result.answer_time is not None and result.status is CallStatus.FAILED


async def test_answered_call_without_audio_still_hangs_up(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    _, task = await h.dial(trunk, audio=b"")
    invite = await h.uas.expect("INVITE")
    await answer_call(h, invite, sink)
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    result = await result_of(task)
    assert (result.status, result.reason) == (CallStatus.ANSWERED, CallReason.NA)
    assert sink.packets == []


async def test_answer_without_a_common_codec_is_acked_then_hung_up(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    answered: list[int] = []
    _, task = await h.dial(trunk, audio=tone(0.2), answered=answered)
    invite = await h.uas.expect("INVITE")
    h.uas.reply(invite, 200, "OK", body=answer_sdp(sink.port, (18, "G729")))
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    result = await result_of(task)
    assert h.uas.methods() == ["INVITE", "ACK", "BYE"]
    assert (result.status, result.reason) == (CallStatus.FAILED, CallReason.GENERAL_ERROR)
    assert result.detail is not None and "no codec in common" in result.detail
    assert answered == [] and sink.packets == []


@pytest.mark.parametrize("address", ["media.example.invalid", "::1"])
async def test_answer_whose_media_address_is_a_name_or_another_family_is_hung_up(h: Harness, address: str) -> None:
    # Sending RTP to a host name would resolve it on the event loop for every 20 ms packet (socket.sendto
    # blocks on DNS), and an IPv6 address cannot be reached from an IPv4 media socket: either way nobody hears.
    trunk = await h.trunk()
    answered: list[int] = []
    _, task = await h.dial(trunk, audio=tone(0.2), answered=answered)
    invite = await h.uas.expect("INVITE")
    family = "IP6" if ":" in address else "IP4"
    body = answer_sdp(4000, (0, "PCMU")).replace(b"c=IN IP4 127.0.0.1", f"c=IN {family} {address}".encode())
    h.uas.reply(invite, 200, "OK", body=body)
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    result = await result_of(task)
    assert h.uas.methods() == ["INVITE", "ACK", "BYE"]
    assert (result.status, result.reason) == (CallStatus.FAILED, CallReason.GENERAL_ERROR)
    assert result.detail is not None and address in result.detail and answered == []
    assert h.streams[0].packets_sent == 0 and h.streams[0].send_errors == 0


async def test_reinvite_to_a_media_host_name_is_refused_and_the_audio_stays(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    call, task = await h.dial(trunk, audio=tone(5.0))
    invite = await h.uas.expect("INVITE")
    await answer_call(h, invite, sink)
    await h.uas.expect("ACK")
    body = answer_sdp(4000, (0, "PCMU")).replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 media.example.invalid")
    h.uas.send(h.uas.in_dialog(invite, "INVITE", 2, body=body), h.uas.source(invite))
    assert (await h.uas.expect_response(488)).cseq.method == "INVITE"
    before = len(sink.packets)
    await asyncio.sleep(0.1)
    assert len(sink.packets) > before and h.streams[0].send_errors == 0
    call.request_stop(StopReason.CANCEL)
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    await result_of(task)


async def test_200_without_sdp_uses_the_early_answer_of_the_183(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    _, task = await h.dial(trunk, audio=tone(0.1))
    invite = await h.uas.expect("INVITE")
    h.uas.reply(invite, 183, "Session Progress", body=answer_sdp(sink.port, (8, "PCMA")))
    await asyncio.sleep(0.1)
    assert sink.packets == []  # early media is negotiated, not played
    h.uas.reply(invite, 200, "OK")
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    result = await result_of(task)
    assert result.status is CallStatus.ANSWERED
    assert len(sink.packets) == 5 and {p[1] & 0x7F for p in sink.packets} == {8}


async def test_record_route_becomes_the_route_set_of_ack_and_bye(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    _, task = await h.dial(trunk, audio=b"")
    invite = await h.uas.expect("INVITE")
    proxy = f"<sip:127.0.0.1:{h.uas.port};lr>"
    h.uas.reply(
        invite, 200, "OK", body=answer_sdp(sink.port, (0, "PCMU")),
        headers=[("Record-Route", f"<sip:10.9.9.9;lr>, {proxy}")],  # the proxy nearest to us last
        contact="sip:uas@10.9.9.8:5099",  # unreachable: only the route leads to the fake UAS
    )  # fmt: skip
    ack = await h.uas.expect("ACK")
    bye = await h.uas.expect("BYE")
    h.uas.reply(bye, 200, "OK")
    await result_of(task)
    # reversed (§12.1.2), and the requests went to the first route (the fake UAS), not the Contact
    for request in (ack, bye):
        assert request.headers.get_all("Route") == [proxy, "<sip:10.9.9.9;lr>"]
        assert request.uri == "sip:uas@10.9.9.8:5099"  # loose routing: the Request-URI is the remote target


async def test_reinvite_moves_the_audio_and_is_answered_with_our_sdp_until_acked(h: Harness) -> None:
    trunk = await h.trunk()
    sink, moved = await h.sink(), await h.sink()
    call, task = await h.dial(trunk, audio=tone(5.0))
    invite = await h.uas.expect("INVITE")
    await answer_call(h, invite, sink)
    await h.uas.expect("ACK")
    await asyncio.sleep(0.1)
    reinvite = h.uas.in_dialog(invite, "INVITE", 2, body=answer_sdp(moved.port, (0, "PCMU")))
    h.uas.send(reinvite, h.uas.source(invite))
    ok = await h.uas.expect_response(200)
    assert ok.cseq.method == "INVITE" and b"m=audio" in ok.body and ok.body == invite.body
    await asyncio.sleep(0.1)
    assert len(h.uas.responses(200)) >= 2  # no ACK yet: our 2xx is sent again (§13.3.1.4)
    before, moved_count = len(sink.packets), len(moved.packets)
    assert moved_count >= 3
    await asyncio.sleep(0.1)
    assert len(sink.packets) == before and len(moved.packets) > moved_count
    h.uas.send(h.uas.in_dialog(invite, "ACK", 2), h.uas.source(invite))
    await asyncio.sleep(0.03)
    answers = len(h.uas.responses(200))
    await asyncio.sleep(0.2)
    assert len(h.uas.responses(200)) == answers  # the ACK stopped the retransmissions
    call.request_stop(StopReason.CANCEL)
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    await result_of(task)


async def test_cancel_of_an_answered_reinvite_gets_200_and_an_unknown_one_481(h: Harness) -> None:
    # §9.2: a CANCEL for a request already answered has no effect and is answered 200; one that matches no
    # request of ours, 481. (405 would contradict the Allow we send, which names CANCEL.)
    trunk = await h.trunk()
    sink = await h.sink()
    call, task = await h.dial(trunk, audio=tone(5.0))
    invite = await h.uas.expect("INVITE")
    await answer_call(h, invite, sink)
    await h.uas.expect("ACK")
    branch = new_branch(RNG)
    reinvite = h.uas.in_dialog(invite, "INVITE", 2, body=answer_sdp(sink.port, (0, "PCMU")), branch=branch)
    h.uas.send(reinvite, h.uas.source(invite))
    await h.uas.expect_response(200)
    h.uas.send(h.uas.in_dialog(invite, "CANCEL", 2, branch=branch), h.uas.source(invite))
    h.uas.send(h.uas.in_dialog(invite, "CANCEL", 3), h.uas.source(invite))
    await h.uas.expect_response(481)
    cancels = [r.status for r in h.uas.responses() if r.cseq.method == "CANCEL"]
    assert sorted(cancels) == [200, 481]
    h.uas.send(h.uas.in_dialog(invite, "ACK", 2), h.uas.source(invite))
    assert not task.done()
    call.request_stop(StopReason.CANCEL)
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    assert (await result_of(task)).stopped


# --- not answered ---


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (486, "Busy Here", (CallStatus.BUSY, CallReason.NA)),
        (480, "Temporarily Unavailable", (CallStatus.NO_ANSWER, CallReason.TIMEOUT)),
        (603, "Decline", (CallStatus.FAILED, CallReason.BLOCKED)),
        (404, "Not Found", (CallStatus.FAILED, CallReason.GENERAL_ERROR)),
    ],
)
async def test_rejection_is_acked_and_mapped(
    h: Harness, status: int, reason: str, expected: tuple[CallStatus, CallReason]
) -> None:
    trunk = await h.trunk()
    _, task = await h.dial(trunk)
    invite = await h.uas.expect("INVITE")
    h.uas.reply(invite, 100, "Trying")
    h.uas.reply(invite, status, reason)
    ack = await h.uas.expect("ACK")
    result = await result_of(task)
    assert (result.status, result.reason) == expected
    assert result.detail == f"SIP {status} {reason}" and result.answer_time is None
    assert ack.vias[0].branch == invite.vias[0].branch and ack.to_addr.tag == "uas1"
    assert port_is_free(h.streams[0].local_address[1])


async def test_unanswered_invite_is_retransmitted_then_fails_with_no_response(h: Harness) -> None:
    trunk = await h.trunk(down_after=2, down_for=60.0)
    _, task = await h.dial(trunk, ring_timeout=0.2)
    result = await result_of(task)
    assert (result.status, result.reason) == (CallStatus.FAILED, CallReason.GENERAL_ERROR)
    assert result.detail is not None and "no response" in result.detail
    assert result.call_time is not None and result.end_time - result.call_time >= 64 * FAST.t1 * 1000 - 5
    assert len(h.uas.requests("INVITE")) == 7 and h.uas.requests("CANCEL") == []  # never CANCEL unheard
    assert trunk.up  # one silent call is not enough to give up on the trunk
    _, task = await h.dial(trunk, ring_timeout=0.2)
    await result_of(task)
    assert not trunk.up  # two in a row: routing should fail over
    assert port_is_free(h.streams[0].local_address[1]) and port_is_free(h.streams[1].local_address[1])


async def test_ring_timeout_cancels_then_487_is_no_answer(h: Harness) -> None:
    trunk = await h.trunk()
    _, task = await h.dial(trunk, ring_timeout=0.15)
    invite = await h.uas.expect("INVITE")
    h.uas.reply(invite, 180, "Ringing")
    cancel = await h.uas.expect("CANCEL")
    h.uas.reply(cancel, 200, "OK")
    h.uas.reply(invite, 487, "Request Terminated")
    await h.uas.expect("ACK")
    result = await result_of(task)
    assert (result.status, result.reason) == (CallStatus.NO_ANSWER, CallReason.TIMEOUT)
    assert result.call_time is not None and result.end_time - result.call_time >= 150
    # §9.1: the CANCEL matches the INVITE: same branch, Call-ID, From, To, CSeq number, Request-URI
    assert cancel.vias[0].branch == invite.vias[0].branch and cancel.uri == invite.uri
    assert cancel.cseq.number == invite.cseq.number and cancel.to_addr.tag is None


async def test_ring_timeout_before_any_provisional_waits_for_one_before_cancelling(h: Harness) -> None:
    trunk = await h.trunk()
    _, task = await h.dial(trunk, ring_timeout=0.05)
    invite = await h.uas.expect("INVITE")
    await asyncio.sleep(0.15)
    assert h.uas.requests("CANCEL") == []
    h.uas.reply(invite, 100, "Trying")
    cancel = await h.uas.expect("CANCEL")
    h.uas.reply(cancel, 200, "OK")
    h.uas.reply(invite, 487, "Request Terminated")
    assert (await result_of(task)).status is CallStatus.NO_ANSWER


async def test_stop_while_ringing_cancels_and_reports_stopped(h: Harness) -> None:
    trunk = await h.trunk()
    call, task = await h.dial(trunk)
    invite = await h.uas.expect("INVITE")
    h.uas.reply(invite, 180, "Ringing")
    await asyncio.sleep(0.05)
    call.request_stop(StopReason.CANCEL)
    cancel = await h.uas.expect("CANCEL")
    h.uas.reply(cancel, 200, "OK")
    h.uas.reply(invite, 487, "Request Terminated")
    result = await result_of(task)
    assert result.stopped and result.answer_time is None and result.call_time is not None


async def test_a_200_crossing_our_cancel_is_acked_and_hung_up(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    _, task = await h.dial(trunk, ring_timeout=0.1, audio=tone(1.0))
    invite = await h.uas.expect("INVITE")
    h.uas.reply(invite, 180, "Ringing")
    cancel = await h.uas.expect("CANCEL")
    h.uas.reply(cancel, 200, "OK")
    h.uas.reply(invite, 200, "OK", body=answer_sdp(sink.port, (0, "PCMU")))
    await h.uas.expect("ACK")
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    result = await result_of(task)
    assert (result.status, result.reason) == (CallStatus.NO_ANSWER, CallReason.TIMEOUT)
    assert sink.packets == []
    # given up before it was answered: a NoAnswer record shows no AnswerTime (ARCHITECTURE.md §2)
    assert result.answer_time is None and result.call_time is not None


async def test_no_final_after_our_cancel_gives_up_after_64_t1(h: Harness) -> None:
    trunk = await h.trunk()
    _, task = await h.dial(trunk, ring_timeout=0.05)
    invite = await h.uas.expect("INVITE")
    h.uas.reply(invite, 180, "Ringing")
    h.uas.reply(await h.uas.expect("CANCEL"), 200, "OK")
    result = await result_of(task)
    assert (result.status, result.reason) == (CallStatus.NO_ANSWER, CallReason.TIMEOUT)
    assert result.call_time is not None and result.end_time - result.call_time >= 64 * FAST.t1 * 1000


# --- authentication ---


def digest_ok(request: Request, header: str, password: str = "secret") -> bool:
    value = request.headers.get(header) or ""
    params: dict[str, str] = dict(re.findall(r'(\w+)="?([^",]*)"?', value))
    ha1 = hashlib.md5(f"{params['username']}:{params['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{request.method}:{params['uri']}".encode()).hexdigest()
    return params["response"] == hashlib.md5(f"{ha1}:{params['nonce']}:{ha2}".encode()).hexdigest()


@pytest.mark.parametrize(
    ("status", "challenge", "credentials"),
    [(401, "WWW-Authenticate", "Authorization"), (407, "Proxy-Authenticate", "Proxy-Authorization")],
)
async def test_challenge_is_answered_once_with_credentials_and_the_next_cseq(
    h: Harness, status: int, challenge: str, credentials: str
) -> None:
    trunk = await h.trunk(username="alice", password="secret")
    sink = await h.sink()
    _, task = await h.dial(trunk)
    first = await h.uas.expect("INVITE")
    h.uas.reply(first, status, "Auth", headers=[(challenge, 'Digest realm="r", nonce="n1"')])
    await h.uas.expect("ACK")
    second = await h.uas.expect_cseq("INVITE", first.cseq.number + 1)
    assert second.cseq.number == first.cseq.number + 1 and second.call_id == first.call_id
    assert second.from_addr.tag == first.from_addr.tag and second.vias[0].branch != first.vias[0].branch
    assert digest_ok(second, credentials) and second.headers.get("Authorization" if status == 407 else
                                                                  "Proxy-Authorization") is None  # fmt: skip
    await answer_call(h, second, sink)
    ack = await h.uas.expect_cseq("ACK", second.cseq.number)
    assert ack.headers.get(credentials) == second.headers.get(credentials)  # §13.2.2.4
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    assert (await result_of(task)).status is CallStatus.ANSWERED


async def test_second_challenge_means_wrong_credentials(h: Harness) -> None:
    trunk = await h.trunk(username="alice", password="wrong")
    _, task = await h.dial(trunk)
    for index in range(2):
        invite = await h.uas.expect_cseq("INVITE", index + 1)
        h.uas.reply(invite, 401, "Unauthorized", headers=[("WWW-Authenticate", 'Digest realm="r", nonce="n"')])
    result = await result_of(task)
    assert (result.status, result.reason) == (CallStatus.FAILED, CallReason.GENERAL_ERROR)
    assert result.detail == "SIP 401 Unauthorized (credentials refused)"
    await asyncio.sleep(0.05)
    assert {r.cseq.number for r in h.uas.requests("INVITE")} == {1, 2}


async def test_a_proxy_challenge_after_the_servers_is_answered_too_keeping_both_credentials(h: Harness) -> None:
    # a carrier's proxy (407, its realm) in front of the server that challenged first (401, another realm):
    # §22.3 calls credentials wrong only when the same realm challenges them again
    trunk = await h.trunk(username="alice", password="secret")
    sink = await h.sink()
    _, task = await h.dial(trunk)
    first = await h.uas.expect("INVITE")
    h.uas.reply(first, 401, "Unauthorized", headers=[("WWW-Authenticate", 'Digest realm="server", nonce="n1"')])
    second = await h.uas.expect_cseq("INVITE", first.cseq.number + 1)
    h.uas.reply(second, 407, "Proxy Auth", headers=[("Proxy-Authenticate", 'Digest realm="proxy", nonce="n2"')])
    third = await h.uas.expect_cseq("INVITE", first.cseq.number + 2)
    assert third.cseq.number == first.cseq.number + 2
    assert digest_ok(third, "Authorization") and digest_ok(third, "Proxy-Authorization")
    await answer_call(h, third, sink)
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    assert (await result_of(task)).status is CallStatus.ANSWERED


async def test_challenges_never_loop_even_when_each_names_a_new_realm(h: Harness) -> None:
    trunk = await h.trunk(username="alice", password="secret")
    _, task = await h.dial(trunk)
    for index in range(10):
        try:
            invite = await h.uas.expect_cseq("INVITE", index + 1, within=0.5)
        except TimeoutError:
            break
        h.uas.reply(invite, 401, "Unauthorized", headers=[("WWW-Authenticate", f'Digest realm="r{index}", nonce="n"')])
    result = await result_of(task)
    assert result.status is CallStatus.FAILED and {r.cseq.number for r in h.uas.requests("INVITE")} == {1, 2, 3, 4}


async def test_a_challenge_asking_auth_int_gets_a_digest_over_the_sdp_body(h: Harness) -> None:
    trunk = await h.trunk(username="alice", password="secret")
    _, task = await h.dial(trunk)
    first = await h.uas.expect("INVITE")
    challenge = 'Digest realm="r", nonce="n1", qop="auth-int"'
    h.uas.reply(first, 401, "Unauthorized", headers=[("WWW-Authenticate", challenge)])
    second = await h.uas.expect_cseq("INVITE", first.cseq.number + 1)
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', second.headers.get("Authorization") or ""))
    ha1 = hashlib.md5(b"alice:r:secret").hexdigest()
    ha2 = hashlib.md5(f"INVITE:{params['uri']}:{hashlib.md5(second.body).hexdigest()}".encode()).hexdigest()
    expected = f"{ha1}:n1:{params['nc']}:{params['cnonce']}:auth-int:{ha2}"
    assert params["qop"] == "auth-int" and params["response"] == hashlib.md5(expected.encode()).hexdigest()
    h.uas.reply(second, 486, "Busy Here")
    await result_of(task)


async def test_challenge_without_credentials_configured_is_final(h: Harness) -> None:
    trunk = await h.trunk()
    _, task = await h.dial(trunk)
    invite = await h.uas.expect("INVITE")
    h.uas.reply(invite, 407, "Proxy Authentication Required",
                headers=[("Proxy-Authenticate", 'Digest realm="r", nonce="n"')])  # fmt: skip
    result = await result_of(task)
    assert result.status is CallStatus.FAILED and result.detail is not None and "no usable credentials" in result.detail


# --- robustness ---


async def test_garbage_datagrams_during_a_call_change_nothing(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    _, task = await h.dial(trunk, audio=tone(0.2))
    invite = await h.uas.expect("INVITE")
    source = h.uas.source(invite)
    for junk in (b"\xff" * 40, b"SIP/2.0 200 OK\r\n\r\n", b"BYE sip:x SIP/2.0\r\nCall-ID: x\r\n\r\n", b"\x80" * 12):
        h.uas.send(junk, source)
    await answer_call(h, invite, sink)
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    result = await result_of(task)
    assert result.status is CallStatus.ANSWERED
    assert trunk.transport is not None and trunk.transport.invalid_datagrams == 4


async def test_stopped_before_dialling_sends_nothing(h: Harness) -> None:
    trunk = await h.trunk()
    call = OutboundCall(call_id=2, e164="+15005550000", caller="1", audio=b"", ring_timeout=1)
    call.request_stop(StopReason.CANCEL)
    result = await trunk.dial(call, on_answered=lambda _: None)
    assert result.stopped and result.call_time is None
    await asyncio.sleep(0.05)
    assert h.uas.received == [] and h.streams == []


async def test_trunk_stop_ends_calls_under_way(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    _, task = await h.dial(trunk, audio=tone(5.0))
    invite = await h.uas.expect("INVITE")
    await answer_call(h, invite, sink)
    await h.uas.expect("ACK")
    await trunk.stop()
    result = await result_of(task)
    assert result.stopped and not trunk.up
    assert h.uas.requests("BYE") and port_is_free(h.streams[0].local_address[1])


async def test_a_call_whose_task_is_cancelled_still_ends_on_the_line_and_leaves_no_transaction(h: Harness) -> None:
    # Whoever runs `dial` may cancel it (a shutdown that cannot wait): the far end must not keep ringing or
    # talking to nobody, and no INVITE transaction may stay behind, retransmitting or waiting forever.
    trunk = await h.trunk()
    sink = await h.sink()
    _, ringing = await h.dial(trunk)
    invite = await h.uas.expect("INVITE")
    h.uas.reply(invite, 180, "Ringing")
    await asyncio.sleep(0.05)
    ringing.cancel()
    cancel = await h.uas.expect("CANCEL")
    assert cancel.vias[0].branch == invite.vias[0].branch

    _, talking = await h.dial(trunk, audio=tone(5.0))
    first_call = invite.call_id
    async with asyncio.timeout(3):
        while not (new := [r for r in h.uas.requests("INVITE") if r.call_id != first_call]):
            h.uas.changed.clear()
            await h.uas.changed.wait()
    invite = new[0]
    await answer_call(h, invite, sink)
    await h.uas.expect("ACK")
    await asyncio.sleep(0.05)
    talking.cancel()
    bye = await h.uas.expect("BYE")
    assert bye.call_id == invite.call_id and bye.to_addr.tag == "uas1"
    for task in (ringing, talking):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert trunk.transport is not None
    await asyncio.sleep(max(FAST.k, FAST.m) + 0.1)
    assert trunk.transport.transactions == 0 and trunk.active_calls == 0


async def test_a_silent_trunk_is_down_for_a_while_then_tried_again(h: Harness) -> None:
    clock = FakeClock()
    trunk = await h.trunk(clock=clock, down_after=1, down_for=30.0)
    assert trunk.up
    _, task = await h.dial(trunk, ring_timeout=0.1)
    assert (await result_of(task)).detail == "no response to INVITE within 0.64 s (Timer B)"
    assert not trunk.up
    clock.advance(seconds=31)
    assert trunk.up  # given another chance: the next call tells
    _, task = await h.dial(trunk)
    h.uas.reply(await h.uas.expect("INVITE", 7), 486, "Busy Here")  # after the 7 sends of the first call
    assert (await result_of(task)).status is CallStatus.BUSY
    assert trunk.up


class FakeDns:
    """A resolver the test steers: the address a name has now, or an error; counts the look-ups."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address: tuple[str, int] | None = address
        self.lookups = 0

    async def __call__(self, host: str, port: int, *, family: int) -> list[tuple[str, int]]:
        self.lookups += 1
        if self.address is None:
            raise OSError(f"{host}: no address")
        return [self.address]


async def busy_call(h: Harness, trunk: SipTrunk, *peers: FakeUas) -> FakeUas:
    """Place a call, answer it 486 from whichever of `peers` (sharing one `changed` event) its INVITE reached;
    that peer."""
    before = [len(peer.requests("INVITE")) for peer in peers]
    _, task = await h.dial(trunk)
    async with asyncio.timeout(3):
        while not (reached := [p for p, n in zip(peers, before, strict=True) if len(p.requests("INVITE")) > n]):
            peers[0].changed.clear()
            await peers[0].changed.wait()
    (peer,) = reached
    peer.reply(peer.requests("INVITE")[-1], 486, "Busy Here")
    assert (await result_of(task)).status is CallStatus.BUSY
    return peer


async def test_the_trunk_host_is_looked_up_again_and_calls_follow_its_new_address(h: Harness) -> None:
    # A carrier moving its SBC (DNS failover) changes what its name resolves to; calls must follow.
    loop = asyncio.get_running_loop()
    moved_transport, moved = await loop.create_datagram_endpoint(
        lambda: FakeUas(changed=h.uas.changed), local_addr=("127.0.0.1", 0)
    )
    try:
        clock = FakeClock()
        dns = FakeDns(("127.0.0.1", h.uas.port))
        trunk = await h.trunk(clock=clock, resolve=dns, host="sbc.carrier.test", resolve_every=60.0)
        assert await busy_call(h, trunk, h.uas, moved) is h.uas
        assert await busy_call(h, trunk, h.uas, moved) is h.uas and dns.lookups == 1  # not before a minute

        dns.address = None  # the name stops resolving for a while: the last address known is kept
        clock.advance(seconds=61)
        for _ in range(2):
            assert await busy_call(h, trunk, h.uas, moved) is h.uas
        assert trunk.up and dns.lookups == 2

        dns.address = ("127.0.0.1", moved.port)
        clock.advance(seconds=61)
        await busy_call(h, trunk, h.uas, moved)  # the look-up runs beside this call, not before it
        assert await busy_call(h, trunk, h.uas, moved) is moved
        assert dns.lookups == 3
    finally:
        moved_transport.close()


async def test_a_host_name_that_cannot_be_a_name_fails_the_call_and_does_not_raise(h: Harness) -> None:
    trunk = await h.trunk(host="sbc..carrier.test")  # the IDNA codec refuses an empty label: UnicodeError
    assert not trunk.up
    _, task = await h.dial(trunk)
    result = await result_of(task)
    assert (result.status, result.reason, result.call_time) == (CallStatus.FAILED, CallReason.GENERAL_ERROR, None)
    assert result.detail is not None and "unreachable" in result.detail


async def test_a_trunk_name_that_never_resolves_fails_the_call_after_the_resolve_timeout(h: Harness) -> None:
    never = asyncio.Event()

    async def hanging(host: str, port: int, *, family: int) -> list[tuple[str, int]]:
        await never.wait()
        return []

    started = asyncio.get_running_loop().time()
    trunk = await h.trunk(host="sbc.carrier.test", resolve=hanging, resolve_timeout=0.1)
    assert not trunk.up and asyncio.get_running_loop().time() - started < 1
    _, task = await h.dial(trunk)
    result = await result_of(task, within=1.0)
    assert result.status is CallStatus.FAILED and result.detail is not None and "unreachable" in result.detail


async def test_a_contact_host_that_cannot_be_a_name_sends_ack_and_bye_to_the_trunk(h: Harness) -> None:
    trunk = await h.trunk()
    sink = await h.sink()
    _, task = await h.dial(trunk, audio=tone(0.1))
    invite = await h.uas.expect("INVITE")
    h.uas.reply(invite, 200, "OK", body=answer_sdp(sink.port, (0, "PCMU")), contact="sip:uas@bad..name:5060")
    ack = await h.uas.expect("ACK")
    h.uas.reply(await h.uas.expect("BYE"), 200, "OK")
    result = await result_of(task)
    assert ack.uri == "sip:uas@bad..name:5060"
    assert (result.status, result.reason) == (CallStatus.ANSWERED, CallReason.NA)


async def test_a_sip_port_already_taken_fails_start(h: Harness) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(SipTrunkError, match="cannot bind"):
            await h.trunk(bind_port=taken.getsockname()[1])


async def test_a_sip_port_still_taken_when_a_call_comes_fails_the_call_and_does_not_raise(h: Harness) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(SipTrunkError):
            await h.trunk(bind_port=taken.getsockname()[1])
        trunk = SipTrunk(
            name="t1",
            settings=SipTrunkSettings(host="127.0.0.1", port=h.uas.port, bind_host="127.0.0.1",
                                      bind_port=taken.getsockname()[1]),
            clock=SystemClock(),
            rtp_clock=h.rtp_clock,
        )  # fmt: skip
        _, task = await h.dial(trunk)  # dialling opens the socket again: the port is still taken
        result = await result_of(task)
    assert (result.status, result.reason, result.call_time) == (CallStatus.FAILED, CallReason.GENERAL_ERROR, None)
    assert result.detail is not None and "cannot bind" in result.detail


@pytest.mark.parametrize(
    "settings",
    [
        {"host": ""},
        {"bind_host": "localhost"},
        {"rtp_ports": (10001, 10001)},
        {"codecs": ("G729",)},
        {"codecs": ()},
        {"max_calls": 0},
        {"password": "a\r\nInjected: yes"},
        {"public_host": "gw.example.com"},  # SDP's c= needs an address: every call would fail
        {"resolve_every": 0},
    ],
)
def test_settings_that_cannot_work_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(SipTrunkError):
        SipTrunk(
            name="bad",
            settings=SipTrunkSettings(**{"host": "127.0.0.1", **settings}),
            clock=SystemClock(),
            rtp_clock=RtpClock(),
        )


@pytest.mark.parametrize(
    ("number", "fmt", "expected"),
    [
        ("+1 (500) 555-0000", NumberFormat.AS_GIVEN, "+1 (500) 555-0000"),
        ("+1 (500) 555-0000", NumberFormat.E164, "+15005550000"),
        ("15005550000", NumberFormat.E164, "+15005550000"),
        ("+15005550000", NumberFormat.DIGITS, "15005550000"),
        ("OptimumM", NumberFormat.DIGITS, "OptimumM"),  # an alphanumeric sender has no digits to keep
    ],
)
def test_number_formats(number: str, fmt: NumberFormat, expected: str) -> None:
    assert format_number(number, fmt) == expected
