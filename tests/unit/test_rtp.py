"""RTP packets, streams and the shared 20 ms clock, on the loopback (switchboard/voice/sip/rtp.py)."""

from __future__ import annotations

import asyncio
import errno
import itertools
import random
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from switchboard.errors import RtpError
from switchboard.voice.sip.rtp import FRAME_SAMPLES, PT_PCMA, PT_PCMU, RtpClock, RtpPacket, RtpStream

Opener = Callable[..., Awaitable[RtpStream]]


@pytest.fixture
async def clock() -> AsyncIterator[RtpClock]:
    c = RtpClock()
    yield c
    await c.stop()


@pytest.fixture
async def open_stream(clock: RtpClock) -> AsyncIterator[Opener]:
    """Open streams on 127.0.0.1 sharing the test's clock (seed 1, 2, ... unless given); closed afterwards."""
    streams: list[RtpStream] = []

    async def open_(**options: object) -> RtpStream:
        options.setdefault("rng", random.Random(len(streams) + 1))
        options.setdefault("keep_received_seconds", 600.0)
        stream = await RtpStream.open(clock=clock, host="127.0.0.1", **options)  # type: ignore[arg-type]
        streams.append(stream)
        return stream

    yield open_
    for stream in streams:
        stream.close()


def frames(count: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(160) for _ in range(count)]


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


# --- packets ---


def test_packet_round_trips_through_the_wire_form() -> None:
    packet = RtpPacket(payload_type=8, sequence=65535, timestamp=0xFFFFFFFF, ssrc=0xDEADBEEF, payload=b"\xd5" * 160)
    wire = packet.encode()
    assert len(wire) == 12 + 160
    assert wire[0] == 0x80 and wire[1] == 8  # version 2, no padding/extension/CSRC; no marker, PT 8
    assert RtpPacket.parse(wire) == packet
    marked = RtpPacket(payload_type=0, sequence=1, timestamp=2, ssrc=3, marker=True, csrcs=(7, 9))
    assert marked.encode()[:2] == bytes([0x82, 0x80])
    assert RtpPacket.parse(marked.encode()) == marked


def test_parse_steps_over_csrcs_extension_and_padding() -> None:
    # V=2 P=1 X=1 CC=2, M=1 PT=0; two CSRCs; an extension of 2 words; payload "abc"; 5 octets of padding
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0x80, 42, 4242, 0x01020304)
    csrcs = struct.pack("!II", 11, 22)
    extension = struct.pack("!HH", 0xBEDE, 2) + b"\x00" * 8
    data = header + csrcs + extension + b"abc" + b"\x00" * 4 + b"\x05"
    packet = RtpPacket.parse(data)
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (0, 42, 4242, 0x01020304)
    assert packet.marker and packet.csrcs == (11, 22) and packet.payload == b"abc"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00" * 5,  # 10 octets: shorter than the header
        struct.pack("!BBHII", 0x40, 0, 1, 2, 3),  # version 1
        struct.pack("!BBHII", 0x83, 0, 1, 2, 3) + b"\x00" * 8,  # 3 CSRCs announced, 2 present
        struct.pack("!BBHII", 0x90, 0, 1, 2, 3) + struct.pack("!HH", 0, 4) + b"\x00" * 4,  # extension cut short
        struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"ab\x00",  # padding count 0
        struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"ab\x09",  # more padding than there are octets
    ],
)
def test_parse_refuses_what_is_not_rtp_with_rtp_error_only(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_type": 128},
        {"sequence": 65536},
        {"timestamp": -1},
        {"ssrc": 1 << 32},
        {"csrcs": tuple(range(16))},
    ],
)
def test_encode_refuses_values_the_header_cannot_carry(fields: dict[str, int]) -> None:
    values = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0, **fields}
    with pytest.raises(RtpError):
        RtpPacket(**values).encode()  # type: ignore[arg-type]


# --- one stream ---


async def test_fifty_frames_go_out_paced_numbered_and_marked(open_stream: Opener) -> None:
    sender = await open_stream(rng=random.Random(5))
    receiver = await open_stream()
    sender.set_remote(*receiver.local_address)
    audio = frames(50)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await asyncio.wait_for(sender.play(audio, PT_PCMA), 3.0) is True
    assert loop.time() - began >= 0.9  # 49 intervals of 20 ms
    await until(lambda: receiver.packets_received == 50)

    packets = [r.packet for r in receiver.received]
    expected = random.Random(5)
    ssrc, first_sequence, first_timestamp = expected.getrandbits(32), expected.getrandbits(16), expected.getrandbits(32)
    assert [p.payload for p in packets] == audio
    assert {p.payload_type for p in packets} == {PT_PCMA}
    assert {p.ssrc for p in packets} == {ssrc} and sender.ssrc == ssrc
    assert [p.sequence for p in packets] == [(first_sequence + i) & 0xFFFF for i in range(50)]
    assert [p.timestamp for p in packets] == [(first_timestamp + FRAME_SAMPLES * i) & 0xFFFFFFFF for i in range(50)]
    assert [p.marker for p in packets] == [True] + [False] * 49
    arrivals = [r.arrival for r in receiver.received]
    assert arrivals[-1] - arrivals[0] >= 0.9
    assert sender.packets_sent == 50 and not sender.playing


async def test_frames_due_before_the_remote_is_known_are_not_sent(open_stream: Opener) -> None:
    sender = await open_stream()
    receiver = await open_stream()
    finished = sender.play(frames(20), PT_PCMU)
    await asyncio.sleep(0.1)  # ~5 ticks with nowhere to send
    sender.set_remote(*receiver.local_address)
    assert await asyncio.wait_for(finished, 2.0) is True
    await until(lambda: receiver.packets_received == sender.packets_sent)
    assert sender.frames_unsent >= 2
    assert sender.packets_sent + sender.frames_unsent == 20
    packets = [r.packet for r in receiver.received]
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in itertools.pairwise(packets))


async def test_stop_cuts_the_audio_short_and_finished_says_so(open_stream: Opener) -> None:
    sender = await open_stream()
    receiver = await open_stream()
    sender.set_remote(*receiver.local_address)
    finished = sender.play(frames(100), PT_PCMU)
    await asyncio.sleep(0.1)
    sender.stop()
    assert await finished is False
    sent = sender.packets_sent
    await asyncio.sleep(0.1)
    assert sender.packets_sent == sent < 100
    receiver.set_remote(*sender.local_address)  # still receiving after stop
    await asyncio.wait_for(receiver.play(frames(2), PT_PCMU), 1.0)
    await until(lambda: sender.packets_received == 2)


async def test_audio_queued_while_playing_follows_without_a_new_talkspurt(open_stream: Opener) -> None:
    sender = await open_stream()
    receiver = await open_stream()
    sender.set_remote(*receiver.local_address)
    shared = frames(5, seed=1)  # calls playing the same audio share its frames: queueing more must not grow them
    first = sender.play(shared, PT_PCMU)
    second = sender.play(frames(5, seed=2), PT_PCMU)
    assert first is second and shared == frames(5, seed=1)
    assert await asyncio.wait_for(second, 2.0) is True
    await until(lambda: receiver.packets_received == 10)
    packets = [r.packet for r in receiver.received]
    assert [p.payload for p in packets] == frames(5, seed=1) + frames(5, seed=2)
    assert [p.marker for p in packets] == [True] + [False] * 9
    sender.play(frames(3), PT_PCMU)
    with pytest.raises(RtpError):
        sender.play(frames(3), PT_PCMA)  # another payload type behind audio still playing


async def test_a_new_talkspurt_after_silence_is_marked_and_its_timestamp_counts_the_gap(open_stream: Opener) -> None:
    sender = await open_stream()
    receiver = await open_stream()
    sender.set_remote(*receiver.local_address)
    await asyncio.wait_for(sender.play(frames(3), PT_PCMU), 1.0)
    await asyncio.sleep(0.2)
    await asyncio.wait_for(sender.play(frames(3), PT_PCMU), 1.0)
    await until(lambda: receiver.packets_received == 6)
    packets = [r.packet for r in receiver.received]
    assert [p.marker for p in packets] == [True, False, False, True, False, False]
    assert [(b.sequence - a.sequence) & 0xFFFF for a, b in itertools.pairwise(packets)] == [1] * 5
    gap = (packets[3].timestamp - packets[2].timestamp) & 0xFFFFFFFF
    assert 10 * FRAME_SAMPLES <= gap <= 25 * FRAME_SAMPLES  # 200 ms and more of silence, in samples, not 160


async def test_received_packets_are_kept_bounded_and_junk_is_counted(open_stream: Opener) -> None:
    receiver = await open_stream(keep_received_seconds=0.1)  # 5 packets of 20 ms
    sender = await open_stream()
    sender.set_remote(*receiver.local_address)
    await asyncio.wait_for(sender.play(frames(10), PT_PCMU), 1.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"not rtp", receiver.local_address)
    await until(lambda: receiver.packets_received == 10 and receiver.packets_invalid == 1)
    assert [r.packet.payload for r in receiver.received] == frames(10)[5:]


async def test_a_call_keeps_no_received_packets_unless_asked_only_counts_them(open_stream: Opener) -> None:
    receiver = await open_stream(keep_received_seconds=0)  # what a call does: 500 calls must not hold gigabytes
    sender = await open_stream()
    sender.set_remote(*receiver.local_address)
    await asyncio.wait_for(sender.play(frames(10), PT_PCMU), 1.0)
    await until(lambda: receiver.packets_received == 10)
    assert receiver.received == []


async def test_a_port_range_gives_an_even_port_in_it_or_rtp_error(open_stream: Opener) -> None:
    stream = await open_stream(port_range=(20000, 60000))
    port = stream.local_address[1]
    assert 20000 <= port <= 60000 and port % 2 == 0
    with pytest.raises(RtpError):
        await open_stream(port_range=(port, port + 1))  # its only even port is taken
    with pytest.raises(RtpError):
        await open_stream(port_range=(port + 1, port + 1))  # no even port at all


async def test_a_socket_that_cannot_be_opened_is_an_rtp_error(clock: RtpClock, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_descriptors(*args: object) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    with monkeypatch.context() as patched, pytest.raises(RtpError, match="Too many open files"):
        patched.setattr(socket, "socket", no_descriptors)
        await RtpStream.open(clock=clock, rng=random.Random(), host="127.0.0.1")


async def test_misuse_is_refused_with_rtp_error(open_stream: Opener, clock: RtpClock) -> None:
    stream = await open_stream()
    with pytest.raises(RtpError):
        stream.play(frames(1), 128)
    stream.close()
    with pytest.raises(RtpError):
        stream.play(frames(1), PT_PCMU)
    with pytest.raises(RtpError):
        await RtpStream.open(clock=clock, rng=random.Random(), host="localhost")
    with pytest.raises(RtpError):
        clock.lateness_percentile(101)


# --- the clock ---


async def test_one_task_paces_many_streams_and_stops_when_idle(open_stream: Opener, clock: RtpClock) -> None:
    receiver = await open_stream()
    senders = [await open_stream() for _ in range(20)]
    for sender in senders:
        sender.set_remote(*receiver.local_address)
    done = [sender.play(frames(10), PT_PCMU) for sender in senders]
    assert clock.running and clock.streams == 20
    assert [t.get_name() for t in asyncio.all_tasks()].count("rtp-clock") == 1
    assert await asyncio.wait_for(asyncio.gather(*done), 2.0) == [True] * 20
    await until(lambda: receiver.packets_received == 200)
    await until(lambda: not clock.running, within=0.5)
    assert clock.streams == 0 and clock.frames_sent == 200
    assert 10 * clock.phases <= clock.ticks <= 12 * clock.phases  # 10 frames of 20 ms, in sub-slot ticks
    assert clock.lateness_count == clock.ticks
    assert 0.0 <= clock.lateness_percentile(50) <= clock.lateness_percentile(99) <= clock.max_lateness_ms
    # and it starts again for the next audio
    await asyncio.wait_for(senders[0].play(frames(2), PT_PCMU), 1.0)
    assert clock.frames_sent == 202


async def test_a_blocked_loop_makes_the_clock_skip_ticks_not_burst(open_stream: Opener, clock: RtpClock) -> None:
    # The receiver is a thread with its own socket: it timestamps packets while the loop is blocked.
    arrivals: dict[int, list[float]] = {}
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stopping = threading.Event()

    def listen() -> None:
        while not stopping.is_set():
            try:
                data = listener.recv(2048)
            except TimeoutError:
                continue
            arrivals.setdefault(RtpPacket.parse(data).ssrc, []).append(time.monotonic())

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        senders = [await open_stream() for _ in range(3)]
        for sender in senders:
            sender.set_remote(*listener.getsockname())
        done = [sender.play(frames(30), PT_PCMU) for sender in senders]
        asyncio.get_running_loop().call_later(0.2, time.sleep, 0.1)  # the whole loop stalls for 100 ms
        await asyncio.wait_for(asyncio.gather(*done), 3.0)
        await asyncio.sleep(0.05)
    finally:
        stopping.set()
        await asyncio.to_thread(thread.join, 1.0)
        listener.close()

    assert clock.skipped_ticks >= 3
    assert clock.max_lateness_ms >= 80
    for sender in senders:
        times = arrivals[sender.ssrc]
        assert len(times) == 30  # nothing lost: the rest of the audio is later, not cut
        most_in_one_tick = max(sum(1 for t in times if start <= t < start + 0.019) for start in times)
        assert most_in_one_tick <= 2
