"""RTP for calls: the packet (RFC 3550 §5.1), one call's media stream, and one 20 ms clock for every stream.

- `RtpPacket`: the fixed header and the payload. `encode` writes version 2 with no padding and no header
  extension; `parse` also accepts what other senders add: a CSRC list, a header extension (§5.3.1) and
  padding (§5.1, P bit), all of which it steps over.
- `RtpStream`: one call's media: a UDP socket bound on a local address, the audio queued by `play`, the
  packets that came back. It sends nothing by itself: the clock asks it for its next frame.
- `RtpClock`: one asyncio task for all streams. Tick n is due at start + n × 20 ms on `loop.time()`, so
  the schedule never drifts however long a tick takes; each tick sends the next frame of every playing
  stream. A loop that fell a whole tick or more behind skips the missed ticks (counted) instead of sending
  them in a burst, because a burst is what a receiver's jitter buffer cannot absorb. The clock's time is
  the event loop's, as that is the timer that wakes it; lateness (actual − due) is recorded per tick.

Audio is G.711 at 8 kHz (RFC 3551 §4.5.14): one 20 ms frame is 160 samples, 160 octets, and the timestamp
advances by 160 per frame. Payload types PCMU = 0 and PCMA = 8 are static (RFC 3551 §6, table 4).

What a skipped tick costs: no frame is lost. Each playing stream sends one frame per tick that runs, with
the next sequence number and timestamp + 160, so a stall delays the rest of the audio by the stall rather
than cutting a hole in it; the receiver sees late packets, not missing ones.

Longer than our usual ~400 lines, and on purpose one module: the stream and the clock share the send path
(`RtpStream._send_next` is the clock's inner loop, kept a plain method call for speed), and the packet
layout they write is the one `RtpPacket` reads.

Errors. `RtpError` is the only exception this module raises: a datagram that is not an RTP packet, a
header field out of range, a port range with no free port, a socket that cannot be opened, a stream used
after `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from switchboard.errors import RtpError

__all__ = [
    "CLOCK_RATE",
    "FRAME_SAMPLES",
    "FRAME_SECONDS",
    "PT_PCMA",
    "PT_PCMU",
    "Received",
    "RtpClock",
    "RtpPacket",
    "RtpStream",
]

PT_PCMU = 0  # RFC 3551 §6, table 4
PT_PCMA = 8
CLOCK_RATE = 8000  # G.711, RFC 3551 §4.5.14
FRAME_SECONDS = 0.020  # the usual packetization (RFC 3551 §4.2: 20 ms by default)
FRAME_SAMPLES = 160  # 8000 Hz × 20 ms

VERSION = 2  # RFC 3550 §5.1
HEADER_SIZE = 12  # the fixed header, without CSRCs (RFC 3550 §5.1)
MAX_CSRC = 15  # the CC field is 4 bits
_HEADER = struct.Struct("!BBHII")
_SEQ_TS = struct.Struct("!HI")  # sequence number and timestamp, at offset 2 of the header

RECEIVE_BUFFER = 1 << 20  # SO_RCVBUF asked for: a second of 500 echoed streams at 172 octets is ~4 MB/s
KEEP_RECEIVED_SECONDS = 0.0
"""How much received audio a stream keeps for inspection by default: none. A call only counts what it
receives; tests ask for more. (Kept, 10 minutes of a call is 30,000 packets: 500 calls held gigabytes, and
the garbage collector's full passes over them stalled the clock for up to 90 ms.)"""
LATENESS_WINDOW = 1 << 16  # lateness samples an RtpClock keeps: ~5 minutes of ticks
PHASES = 4  # sub-slots of a frame the clock spreads streams over (RtpClock)


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet: the fixed header's fields (RFC 3550 §5.1) and the payload (padding removed)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()

    def encode(self) -> bytes:
        """The packet on the wire: version 2, no padding, no header extension."""
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"payload type {self.payload_type} is not 0..127 (RFC 3550 §5.1: 7 bits)")
        if not 0 <= self.sequence <= 0xFFFF:
            raise RtpError(f"sequence number {self.sequence} is not 16 bits")
        if not 0 <= self.timestamp <= 0xFFFFFFFF or not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise RtpError("timestamp and SSRC are 32 bits")
        if len(self.csrcs) > MAX_CSRC or any(not 0 <= c <= 0xFFFFFFFF for c in self.csrcs):
            raise RtpError(f"at most {MAX_CSRC} CSRCs of 32 bits (RFC 3550 §5.1: CC is 4 bits)")
        first = (VERSION << 6) | len(self.csrcs)
        second = (0x80 if self.marker else 0) | self.payload_type
        header = _HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)
        csrcs = struct.pack(f"!{len(self.csrcs)}I", *self.csrcs) if self.csrcs else b""
        return header + csrcs + self.payload

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Read a packet, stepping over a CSRC list's extension header and padding; `RtpError` if not RTP."""
        size = len(data)
        if size < HEADER_SIZE:
            raise RtpError(f"{size} octets is shorter than the RTP header ({HEADER_SIZE})")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != VERSION:
            raise RtpError(f"RTP version {first >> 6}, not 2")
        count = first & 0x0F
        offset = HEADER_SIZE + 4 * count
        if offset > size:
            raise RtpError(f"{count} CSRCs run past the end of a {size}-octet packet")
        csrcs = struct.unpack_from(f"!{count}I", data, HEADER_SIZE) if count else ()
        if first & 0x10:  # X: a header extension, 4 octets then `length` 32-bit words (RFC 3550 §5.3.1)
            if offset + 4 > size:
                raise RtpError("the header extension runs past the end of the packet")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
            if offset > size:
                raise RtpError("the header extension runs past the end of the packet")
        end = size
        if first & 0x20:  # P: the last octet counts the padding octets, itself included (RFC 3550 §5.1)
            padding = data[-1]
            if padding == 0 or offset + padding > size:
                raise RtpError(f"padding of {padding} octets does not fit the packet")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
            csrcs=tuple(csrcs),
        )


class Received(NamedTuple):
    """A packet that reached a stream, with its arrival time on `loop.time()` and where it came from."""

    arrival: float
    packet: RtpPacket
    source: tuple[str, int]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.stream: RtpStream | None = None  # set once the stream exists; nothing is expected before

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.stream is not None:
            self.stream._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like, reported on the next send: the far end is not listening
        # (yet). Media is best effort, so it is counted rather than raised.
        if self.stream is not None:
            self.stream.send_errors += 1


class RtpStream:
    """One call's media: a UDP socket, the audio queued to send, and the packets received.

    Open it with `await RtpStream.open(clock=..., rng=..., host=...)`. `set_remote` gives the address from
    the SDP answer; frames that fall due before it is known are consumed on schedule but not sent (counted
    in `frames_unsent`). `play(frames, payload_type)` queues audio and returns `finished`, which resolves to
    True once the last queued frame has been sent, or False if `stop` came first. The SSRC and the initial
    sequence number and timestamp come from `rng` (random, as RFC 3550 §5.1 asks). The first packet of
    each talkspurt (the first after an idle stream) carries the marker bit (RFC 3551 §4.1).

    Whatever arrives on the socket, from any source, is kept (the last `keep_received_seconds` of it) and
    listed by `received` with its arrival time and source; `packets_sent`, `packets_received`,
    `packets_invalid` (not RTP version 2), `frames_unsent` and `send_errors` count. `stop` ends the audio
    and keeps the socket; `close` releases it.
    """

    def __init__(
        self,
        *,
        clock: RtpClock,
        rng: random.Random,
        transport: asyncio.DatagramTransport,
        sock: socket.socket,
        keep_received_seconds: float = KEEP_RECEIVED_SECONDS,
    ) -> None:
        """Use `RtpStream.open`, which binds the socket and makes the transport."""
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._transport = transport
        # Packets go straight to the socket: the transport's sendto costs ~10% more per packet, and a
        # tick sends one packet per call. The transport takes over for good once the socket would
        # block, so that nothing sent later overtakes what it holds.
        self._sendto = sock.sendto
        self._direct = True
        sockname = transport.get_extra_info("sockname")
        self.local_address: tuple[str, int] = (sockname[0], sockname[1])
        self.remote: tuple[str, int] | None = None
        self.ssrc = rng.getrandbits(32)
        self._sequence = rng.getrandbits(16)
        self._timestamp = rng.getrandbits(32)
        self._header = bytearray(_HEADER.pack(VERSION << 6, 0, 0, 0, self.ssrc))
        self._frames: Sequence[bytes] = []
        """What `play` queued: never changed in place, as calls playing the same audio share one sequence."""
        self._next = 0
        self._payload_type = -1
        self._talkspurt = True  # the next packet starts a talkspurt: marker bit, timestamp for the gap
        self._last_sent_at: float | None = None
        self._finished: asyncio.Future[bool] = self._loop.create_future()
        self._finished.set_result(True)  # nothing queued yet
        self._closed = False
        # raw (arrival, datagram, source), parsed only when read: parsing costs more than receiving
        self._keep_received = keep_received_seconds > 0
        self._received_raw: deque[tuple[float, bytes, tuple[str, int]]] = deque(
            maxlen=max(1, math.ceil(keep_received_seconds / FRAME_SECONDS))
        )
        self.packets_sent = 0
        self.packets_received = 0
        self.packets_invalid = 0
        self.frames_unsent = 0
        self.send_errors = 0

    @classmethod
    async def open(
        cls,
        *,
        clock: RtpClock,
        rng: random.Random,
        host: str = "127.0.0.1",
        port_range: tuple[int, int] | None = None,
        receive_buffer: int = RECEIVE_BUFFER,
        keep_received_seconds: float = KEEP_RECEIVED_SECONDS,
    ) -> RtpStream:
        """A stream bound on `host` (an IP literal): on any free port, or on a free even port of
        `port_range` (inclusive), even because RTP takes the even port and leaves the next to RTCP
        (RFC 3550 §11). `receive_buffer` is asked for as SO_RCVBUF, best effort: the kernel may cap it."""
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        except ValueError as exc:
            raise RtpError(f"the media address must be an IP address, not {host!r}") from exc
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:  # out of file descriptors, or the family is not supported here
            raise RtpError(f"cannot create a UDP socket: {exc}") from exc
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            _bind(sock, host, port_range, rng)
            protocol = _Protocol()
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: protocol, sock=sock)
        except OSError as exc:  # the one place the socket's errors become ours (module docstring)
            sock.close()
            raise RtpError(f"cannot open RTP on {host}: {exc}") from exc
        except BaseException:
            sock.close()
            raise
        stream = cls(clock=clock, rng=rng, transport=transport, sock=sock, keep_received_seconds=keep_received_seconds)
        protocol.stream = stream
        return stream

    # --- sending ---

    def set_remote(self, host: str, port: int) -> None:
        """Where to send: the connection address and media port of the SDP answer."""
        self.remote = (host, port)

    @property
    def finished(self) -> asyncio.Future[bool]:
        """Resolves when the queued audio is all sent (True) or `stop` cut it short (False)."""
        return self._finished

    @property
    def playing(self) -> bool:
        return self._next < len(self._frames)

    def play(self, frames: Sequence[bytes], payload_type: int) -> asyncio.Future[bool]:
        """Queue 20 ms frames of `payload_type` after whatever is still playing; returns `finished`."""
        if self._closed:
            raise RtpError("the stream is closed")
        if not 0 <= payload_type <= 127:
            raise RtpError(f"payload type {payload_type} is not 0..127")
        if self.playing and payload_type != self._payload_type:
            raise RtpError(f"payload type {payload_type} queued behind audio of payload type {self._payload_type}")
        if not frames:
            return self._finished
        if self.playing:
            self._frames = [*self._frames, *frames]  # a new list: the one playing may be another call's too
        else:
            self._frames = frames  # not copied: 10 minutes of audio are 30,000 frames
            self._next = 0
            self._talkspurt = True
            self._header[1] = payload_type
            self._payload_type = payload_type
            if self._finished.done():
                self._finished = self._loop.create_future()
        self._clock.register(self)
        return self._finished

    def stop(self) -> None:
        """Drop the audio not yet sent; `finished` resolves False if it was still pending. Keeps receiving."""
        if self.playing:
            self._frames = []
            self._next = 0
            self._talkspurt = True
        self._clock.unregister(self)
        if not self._finished.done():
            self._finished.set_result(False)

    def _send_next(self, now: float) -> bool:
        """Send the next frame (called by the clock, once per tick); False once nothing is left to send."""
        frames = self._frames
        index = self._next
        if index >= len(frames):
            return False
        self._next = index + 1
        remote = self.remote
        if remote is None:
            # time passes for this frame but no packet goes out: the sequence number stays (it counts
            # packets sent, RFC 3550 §5.1) and the first packet sent starts a talkspurt
            self.frames_unsent += 1
        else:
            header = self._header
            if self._talkspurt:
                self._talkspurt = False
                header[1] = 0x80 | self._payload_type
                last = self._last_sent_at
                if last is not None:
                    # after silence the timestamp also counts the samples not sent (RFC 3550 §5.1)
                    gap = max(1, round((now - last) / FRAME_SECONDS))
                    self._sequence = (self._sequence + 1) & 0xFFFF
                    self._timestamp = (self._timestamp + FRAME_SAMPLES * gap) & 0xFFFFFFFF
            else:
                header[1] = self._payload_type
                self._sequence = (self._sequence + 1) & 0xFFFF
                self._timestamp = (self._timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
            _SEQ_TS.pack_into(header, 2, self._sequence, self._timestamp)
            self._last_sent_at = now
            # a new object per packet, never a reused buffer: a transport that must queue the datagram
            # (uvloop does, by reference) would otherwise send what a later tick wrote into it
            data = header + frames[index]
            if self._direct:
                try:
                    self._sendto(data, remote)
                except (BlockingIOError, InterruptedError):
                    self._direct = False
                    self._transport.sendto(data, remote)
                except OSError:
                    self.send_errors += 1
            else:
                self._transport.sendto(data, remote)
            self.packets_sent += 1
        if index + 1 < len(frames):
            return True
        self._frames = []
        self._next = 0
        self._talkspurt = True
        if not self._finished.done():
            self._finished.set_result(True)
        return False

    # --- receiving ---

    def _received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < HEADER_SIZE or data[0] >> 6 != VERSION:  # the full check waits for `received`
            self.packets_invalid += 1
            return
        self.packets_received += 1
        if self._keep_received:
            self._received_raw.append((self._loop.time(), data, (addr[0], addr[1])))

    @property
    def received(self) -> list[Received]:
        """The packets received (the last `keep_received_seconds` worth of them), oldest first. Counted in
        `packets_received` but left out here: a version-2 header whose CSRCs, extension or padding do
        not fit the datagram."""
        packets = []
        for arrival, data, source in self._received_raw:
            try:
                packets.append(Received(arrival, RtpPacket.parse(data), source))
            except RtpError:
                continue
        return packets

    # --- life ---

    def close(self) -> None:
        """Stop playing and release the port."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        self._transport.close()

    async def __aenter__(self) -> RtpStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _bind(sock: socket.socket, host: str, port_range: tuple[int, int] | None, rng: random.Random) -> None:
    if port_range is None:
        sock.bind((host, 0))
        return
    low, high = port_range
    first = low + (low & 1)  # even ports only (RFC 3550 §11)
    ports = list(range(first, high + 1, 2))
    if not ports:
        raise RtpError(f"no even port in {low}..{high}")
    start = rng.randrange(len(ports))  # a random start spreads calls over the range
    for port in ports[start:] + ports[:start]:
        try:
            sock.bind((host, port))
            return
        except OSError:
            continue
    raise RtpError(f"no free even UDP port on {host} in {low}..{high}")


class RtpClock:
    """The one 20 ms clock: a task that runs while any stream is playing and sends each one's next frame.

    Streams are spread over `phases` sub-slots of the 20 ms frame (5 ms apart by default), each stream in the
    phase that had the fewest when it was registered, and every tick serves one phase. Each stream still
    sends exactly one packet per 20 ms, and a tick sends a quarter of the packets, so the last packet of a
    tick leaves a quarter as late as it would if every stream were served at the same instant (500 calls:
    about 1.5 ms rather than 6 ms of sending per tick, measured in `python -m bench voice`).

    Read by the benchmark: `ticks` (sub-slot ticks), `skipped_ticks` (whole frames skipped by a stalled loop),
    `frames_sent`, `lateness_percentile(p)` (ms, over the last `lateness_window` ticks), `max_lateness_ms`,
    `tick_cost_percentile(p)` (ms spent sending in a tick) and `tick_samples()`.
    """

    def __init__(
        self, *, frame_seconds: float = FRAME_SECONDS, lateness_window: int = LATENESS_WINDOW, phases: int = PHASES
    ) -> None:
        if phases < 1:
            raise RtpError(f"an RTP clock needs at least one phase, not {phases}")
        self.frame_seconds = frame_seconds
        self.phases = phases
        # insertion-ordered sets: each phase's streams are served in arrival order
        self._phase_streams: list[dict[RtpStream, None]] = [{} for _ in range(phases)]
        self._phase_of: dict[RtpStream, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._lateness: deque[float] = deque(maxlen=lateness_window)
        self._cost: deque[float] = deque(maxlen=lateness_window)
        self._served: deque[int] = deque(maxlen=lateness_window)
        self.ticks = 0
        self.skipped_ticks = 0
        self.frames_sent = 0
        self.max_lateness_ms = 0.0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def streams(self) -> int:
        """How many streams are playing."""
        return len(self._phase_of)

    def register(self, stream: RtpStream) -> None:
        """Serve `stream` from its phase's next tick on; starts the clock's task if it is not running."""
        if stream not in self._phase_of:
            phase = min(range(self.phases), key=lambda p: len(self._phase_streams[p]))
            self._phase_of[stream] = phase
            self._phase_streams[phase][stream] = None
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rtp-clock")

    def unregister(self, stream: RtpStream) -> None:
        phase = self._phase_of.pop(stream, None)
        if phase is not None:
            self._phase_streams[phase].pop(stream, None)

    async def stop(self) -> None:
        """Stop every stream and wait for the task to end (at shutdown)."""
        for stream in list(self._phase_of):
            stream.stop()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        slot = 0  # the sub-slot tick that is due next, at start + slot × frame / phases
        try:
            await self._tick_forever(loop, start, slot)
        finally:
            self._task = None

    async def _tick_forever(self, loop: asyncio.AbstractEventLoop, start: float, slot: int) -> None:
        frame = self.frame_seconds
        phases = self.phases
        step = frame / phases
        while self._phase_of:
            due = start + slot * step
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                if not self._phase_of:
                    break
            now = loop.time()
            late = now - due
            if late >= frame:
                # a whole frame or more behind: jump to the latest slot of this phase already due rather than
                # sending the missed frames back to back (phases behind by less than a frame catch up in turn,
                # one packet per stream per frame all the same)
                missed = int(late // frame)
                self.skipped_ticks += missed
                slot += missed * phases
            late_ms = late * 1000.0
            self._lateness.append(late_ms)
            if late_ms > self.max_lateness_ms:
                self.max_lateness_ms = late_ms
            began = time.perf_counter()
            streams = self._phase_streams[slot % phases]
            served = tuple(streams)
            for stream in served:
                if not stream._send_next(now):
                    # drained: nothing left for the next tick
                    streams.pop(stream, None)
                    self._phase_of.pop(stream, None)
            self.frames_sent += len(served)
            self._cost.append((time.perf_counter() - began) * 1000.0)
            self._served.append(len(served))
            self.ticks += 1
            slot += 1

    def tick_samples(self) -> list[tuple[float, float, int]]:
        """(lateness, cost, packets) of the ticks held (the last `lateness_window`), oldest first: how late
        each tick began (ms), how long it took to send its packets (ms; the last one goes out that much after
        the first), and how many it sent."""
        return list(zip(self._lateness, self._cost, self._served, strict=True))

    def lateness_percentile(self, p: float) -> float:
        """The p-th percentile (0..100, nearest rank) of tick lateness in ms; 0.0 before any tick."""
        return _percentile(self._lateness, p)

    def tick_cost_percentile(self, p: float) -> float:
        """The p-th percentile (0..100, nearest rank) of the ms a tick spent sending."""
        return _percentile(self._cost, p)

    @property
    def lateness_count(self) -> int:
        """How many lateness samples are held (at most the window)."""
        return len(self._lateness)


def _percentile(samples: deque[float], p: float) -> float:
    if not 0 <= p <= 100:
        raise RtpError(f"percentile {p} is not 0..100")
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]
