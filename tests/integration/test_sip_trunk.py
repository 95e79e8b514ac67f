"""SipTrunk against sipp (tests/integration/sipp.py) as the far end: one test per call outcome, asserting the
CallResult the dialer turns into the call record (status, reason, times, detail) and what sipp saw; and
the audio: what sipp echoes back (-rtp_echo) is the negotiated codec in 20 ms packets, and decodes to the
speech we rendered.

What every trunk promises (each outcome a result with its status and reason, `on_answered` told exactly when
answered, a call's stop and the trunk's stop ending calls with CANCEL or BYE, calls at once kept apart) is the
conformance suite's, tests/contract/test_trunk.py, which runs SipTrunk against one sipp for the session;
this file keeps what is SIP's own: details, timings, message flows, retransmissions, digest, audio.

One sipp per test: each scenario is rendered with that test's parameters (status, ring time, hang-up), so
there is nothing to share; starting sipp takes ~0.1-0.3 s. Ring times are 0.2 s and audio 0.2-2.5 s, so
the whole file runs in about 15 s. Skipped when sipp is not installed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from switchboard.domain.clock import SystemClock
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.voice import audio
from switchboard.voice.sip.rtp import PT_PCMA, PT_PCMU, RtpClock, RtpPacket, RtpStream
from switchboard.voice.sip.transaction import Timers
from switchboard.voice.sip.trunk import SipTrunk, SipTrunkSettings
from switchboard.voice.trunk import CallResult, OutboundCall
from tests.integration.sipp import SippPeer, SippResult, check_digest

pytestmark = pytest.mark.timeout(30)

USERNAME, PASSWORD = "switchboard", "secret"  # the uas_auth template's defaults


def tone(seconds: float) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return (np.sin(2 * np.pi * 300 * t) * 6000).astype("<i2").tobytes()


@dataclass
class Setup:
    rtp_clock: RtpClock = field(default_factory=RtpClock)
    peers: list[SippPeer] = field(default_factory=list)
    trunks: list[SipTrunk] = field(default_factory=list)
    streams: list[RtpStream] = field(default_factory=list)

    def sipp(self, name: str, **params: Any) -> SippPeer:
        peer = SippPeer(name, **params).start()  # skips the test when sipp is not installed
        self.peers.append(peer)
        return peer

    async def trunk(self, peer: SippPeer, *, timers: Timers | None = None, **settings: Any) -> SipTrunk:
        async def open_media(**kwargs: Any) -> RtpStream:
            stream = await RtpStream.open(**kwargs, keep_received_seconds=600)
            self.streams.append(stream)
            return stream

        trunk = SipTrunk(
            name="sipp",
            settings=SipTrunkSettings(host=peer.host, port=peer.port, **settings),
            clock=SystemClock(),
            rtp_clock=self.rtp_clock,
            rng=random.Random(),
            timers=timers,
            open_media=open_media,
        )
        await trunk.start()
        self.trunks.append(trunk)
        return trunk

    async def call(self, trunk: SipTrunk, *, pcm: bytes = b"", ring_timeout: float = 10.0) -> tuple[CallResult, int]:
        """Dial +15005550000 and return the result and the time (ms) `on_answered` was told, or -1."""
        answered: list[int] = []
        call = OutboundCall(call_id=1, e164="+15005550000", caller="+15551230000", audio=pcm,
                            ring_timeout=ring_timeout)  # fmt: skip
        result = await asyncio.wait_for(trunk.dial(call, on_answered=answered.append), 20)
        assert self.streams and all(port_is_free(s.local_address[1]) for s in self.streams), "RTP socket leaked"
        return result, answered[0] if answered else -1


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    s = Setup()
    yield s
    for trunk in s.trunks:
        await trunk.stop()
    await s.rtp_clock.stop()
    for peer in s.peers:
        peer.stop()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


async def finished(peer: SippPeer) -> SippResult:
    return await asyncio.to_thread(peer.wait, 10.0)


def flow(result: SippResult) -> list[str]:
    """What sipp received, as method names."""
    return [m.method or str(m.status) for m in result.received()]


async def test_answered_and_we_hang_up_after_the_audio(setup: Setup) -> None:
    peer = setup.sipp("uas_answer", ring_ms=200, hangup="us")
    trunk = await setup.trunk(peer)
    result, answered_at = await setup.call(trunk, pcm=tone(1.0))
    sipp = await finished(peer)

    assert (result.status, result.reason, result.stopped) == (CallStatus.ANSWERED, CallReason.NA, False)
    assert result.call_time is not None and result.answer_time is not None
    assert result.answer_time == answered_at
    assert 180 <= result.answer_time - result.call_time < 1500  # 200 ms of ringing
    assert 950 <= result.end_time - result.answer_time < 2500  # the 1 s of audio, then BYE and its 200
    assert result.detail == "played to the end, then BYE"
    assert (sipp.successful, sipp.failed) == (1, 0), sipp.describe()
    assert flow(sipp) == ["INVITE", "ACK", "BYE"]


async def test_answered_and_the_called_party_hangs_up_first(setup: Setup) -> None:
    peer = setup.sipp("uas_answer", hangup="peer", hold_ms=300)
    trunk = await setup.trunk(peer)
    result, _ = await setup.call(trunk, pcm=tone(2.0))
    sipp = await finished(peer)

    assert (result.status, result.reason) == (CallStatus.ANSWERED, CallReason.CALLER_HANG_UP)
    assert result.answer_time is not None and 250 <= result.end_time - result.answer_time < 1500
    assert result.detail == "the called party hung up"
    assert (sipp.successful, sipp.failed) == (1, 0), sipp.describe()
    assert flow(sipp) == ["INVITE", "ACK", "200"]  # our 200 to its BYE; we sent no BYE of our own


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (486, "Busy Here", (CallStatus.BUSY, CallReason.NA)),
        (480, "Temporarily Unavailable", (CallStatus.NO_ANSWER, CallReason.TIMEOUT)),
        (603, "Decline", (CallStatus.FAILED, CallReason.BLOCKED)),
        (403, "Forbidden", (CallStatus.FAILED, CallReason.BLOCKED)),
        (503, "Service Unavailable", (CallStatus.FAILED, CallReason.GENERAL_ERROR)),
    ],
)
async def test_rejected_with_a_final_status(
    setup: Setup, status: int, reason: str, expected: tuple[CallStatus, CallReason]
) -> None:
    peer = setup.sipp("uas_reject", status=status, ring_ms=200)
    trunk = await setup.trunk(peer)
    result, answered_at = await setup.call(trunk, pcm=tone(0.5))
    sipp = await finished(peer)

    assert (result.status, result.reason) == expected
    assert result.detail == f"SIP {status} {reason}"
    assert result.answer_time is None and answered_at == -1
    assert result.call_time is not None and 180 <= result.end_time - result.call_time < 1500
    assert (sipp.successful, sipp.failed) == (1, 0), sipp.describe()
    assert flow(sipp) == ["INVITE", "ACK"]


async def test_ringing_until_our_cancel_is_no_answer(setup: Setup) -> None:
    peer = setup.sipp("uas_ring_until_cancel")
    trunk = await setup.trunk(peer)
    result, _ = await setup.call(trunk, pcm=tone(0.5), ring_timeout=0.2)
    sipp = await finished(peer)

    assert (result.status, result.reason) == (CallStatus.NO_ANSWER, CallReason.TIMEOUT)
    assert result.answer_time is None and result.call_time is not None
    assert 190 <= result.end_time - result.call_time < 1500
    assert result.detail == "not answered within 0.2 s (CANCEL, SIP 487 Request Terminated)"
    assert (sipp.successful, sipp.failed) == (1, 0), sipp.describe()
    assert flow(sipp) == ["INVITE", "CANCEL", "ACK"]


async def test_no_response_at_all_is_a_general_error(setup: Setup) -> None:
    # Timer B is 64·T1: with T1 = 20 ms the INVITE is given up after 1.28 s instead of 32 s
    timers = Timers(t1=0.02)
    peer = setup.sipp("uas_silent", silence_ms=1_600)
    trunk = await setup.trunk(peer, timers=timers)
    result, _ = await setup.call(trunk, pcm=tone(0.5), ring_timeout=10.0)
    sipp = await finished(peer)

    assert (result.status, result.reason) == (CallStatus.FAILED, CallReason.GENERAL_ERROR)
    assert result.detail == "no response to INVITE within 1.28 s (Timer B)"
    assert result.answer_time is None and result.call_time is not None
    assert 1270 <= result.end_time - result.call_time < 2500
    invites = sipp.received("INVITE")
    assert len(invites) == 7 and len({m.text for m in invites}) == 1  # retransmitted as is, at 20, 40, 80 ... ms


@pytest.mark.parametrize(("challenge", "qop"), [(401, ""), (401, "auth"), (407, "")])
async def test_digest_challenge_then_answered(setup: Setup, challenge: int, qop: str) -> None:
    peer = setup.sipp("uas_auth", challenge_status=challenge, qop=qop)
    trunk = await setup.trunk(peer, username=USERNAME, password=PASSWORD)
    result, _ = await setup.call(trunk, pcm=tone(0.2))
    sipp = await finished(peer)

    assert (result.status, result.reason) == (CallStatus.ANSWERED, CallReason.NA), result.detail
    assert (sipp.successful, sipp.failed) == (1, 0), sipp.describe()
    assert flow(sipp) == ["INVITE", "ACK", "INVITE", "ACK", "BYE"]
    retried = sipp.received("INVITE")[1]
    assert check_digest(retried, username=USERNAME, password=PASSWORD)
    header = "Authorization" if challenge == 401 else "Proxy-Authorization"
    assert retried.header(header) is not None


async def test_wrong_password_is_refused(setup: Setup) -> None:
    peer = setup.sipp("uas_auth", challenge_status=401)
    trunk = await setup.trunk(peer, username=USERNAME, password="not-the-password")
    result, _ = await setup.call(trunk, pcm=tone(0.2))
    await finished(peer)
    assert (result.status, result.reason) == (CallStatus.FAILED, CallReason.BLOCKED)
    assert result.detail == "SIP 403 Forbidden"


# --- the audio that reaches sipp ---


@pytest.fixture(scope="module")
def speech() -> bytes:
    """Speech: "Welcome to Optimum Measures Voice solution" in en-US, 8 kHz 16-bit PCM, as the dialer prepares it."""
    from switchboard.voice.tts import default_engine

    async def render() -> bytes:
        engine = default_engine()
        try:
            rendered = await engine.render("Welcome to Optimum Measures Voice solution", locale="en-US")
        finally:
            engine.close()
        samples = rendered.samples.astype(np.float32) / 32768.0
        return audio.to_telephony(audio.Pcm(samples, rendered.rate)).astype("<i2").tobytes()

    return asyncio.run(render())


@pytest.mark.parametrize(("payload_type", "codec"), [(PT_PCMA, audio.Codec.PCMA), (PT_PCMU, audio.Codec.PCMU)])
async def test_echoed_audio_is_the_negotiated_codec_in_20_ms_packets_and_the_speech_we_played(
    setup: Setup, speech: bytes, payload_type: int, codec: audio.Codec
) -> None:
    peer = setup.sipp("uas_answer", payload_type=payload_type)  # sipp answers with this one codec only
    trunk = await setup.trunk(peer)
    result, _ = await setup.call(trunk, pcm=speech)
    sipp = await finished(peer)
    assert result.status is CallStatus.ANSWERED and (sipp.successful, sipp.failed) == (1, 0), sipp.describe()

    played = np.frombuffer(speech, dtype="<i2")
    frames = -(-len(played) // 160)
    received = setup.streams[0].received
    packets: list[RtpPacket] = [r.packet for r in received]
    assert len(packets) >= frames - 2, f"{len(packets)} of {frames} packets came back"
    assert {p.payload_type for p in packets} == {payload_type}
    assert {len(p.payload) for p in packets} == {160}
    assert all(
        b.sequence - a.sequence == 1 and b.timestamp - a.timestamp == 160 for a, b in itertools.pairwise(packets)
    )

    gaps = np.diff([r.arrival for r in received]) * 1000
    assert 18.0 <= float(np.median(gaps)) <= 22.0, f"median spacing {np.median(gaps):.1f} ms"
    assert float(np.mean(np.abs(gaps - 20.0) < 10.0)) >= 0.9, "more than 10% of packets off by 10 ms or more"

    decoded = codec.decode(b"".join(p.payload for p in packets))
    score = audio.correlate(played[: len(decoded)], decoded, max_lag=160)
    assert score > 0.99, f"correlation {score:.4f}"
