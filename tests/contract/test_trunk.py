"""The `Trunk` conformance suite (switchboard/voice/trunk.py): what every trunk promises the dialer, run against
each implementation.

- `simulator`: `SimulatedTrunk`, ringing 0.1 s, the called party hanging up after 0.2 s.
- `sip`: `SipTrunk` on 127.0.0.1 against one sipp for the whole session, running tests/sipp/uas_by_number.xml:
  each call's outcome is chosen by the called number's last two digits, as the simulator's test numbers
  choose it. T1 is 20 ms, so Timer B (no response at all) is 1.28 s. Skipped without sipp.

The promises: `dial` runs a call to its end and never raises for what happens on the line: answered (played
to the end, or the called party hangs up), busy, no answer, refused, or no response at all are results,
with the moment of answer told through `on_answered` exactly when there was one; a call's `stop` ends it
at once (CANCEL while ringing, BYE once answered), and a call stopped before it is dialled is never placed;
the trunk's `stop` ends the calls still under way; calls at once each get their own result. The trunk keeps
no limits of its own (the dialer keeps `max_calls` and `cps`), so none is tested here beyond their being
stated.

What an implementation cannot show (the simulator has no far end that sees a CANCEL or BYE, and no number
that stays silent) is declared by its `Harness` and skipped with that reason. SIP's own details (response
texts, timings, retransmissions, digest authentication, the audio on the wire) stay in
tests/integration/test_sip_trunk.py.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

import pytest

from switchboard.domain.clock import SystemClock
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.voice.simulator import SimulatedTrunk
from switchboard.voice.sip.rtp import RtpClock
from switchboard.voice.sip.transaction import Timers
from switchboard.voice.sip.trunk import SipTrunk, SipTrunkSettings
from switchboard.voice.trunk import CallResult, OutboundCall, StopReason, Trunk
from tests.integration.sipp import SippPeer

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 10.0
"""Seconds a dial may take at most in these tests (Timer B is 1.28 s, the longest audio 3 s)."""
QUIET = 0.3


class Line(enum.Enum):
    """What happens on the line, by the last two digits of the number called (the simulator's test numbers,
    and tests/sipp/uas_by_number.xml)."""

    ANSWERED = "00"
    BUSY = "01"
    RINGS = "02"
    """Rings until the caller gives up."""
    BLOCKED = "03"
    UNAVAILABLE = "04"
    HANGS_UP = "05"
    """Answers, then the called party hangs up before the audio ends."""
    SILENT = "06"
    """No response at all."""


EXPECTED = {
    Line.ANSWERED: (CallStatus.ANSWERED, CallReason.NA),
    Line.BUSY: (CallStatus.BUSY, CallReason.NA),
    Line.RINGS: (CallStatus.NO_ANSWER, CallReason.TIMEOUT),
    Line.BLOCKED: (CallStatus.FAILED, CallReason.BLOCKED),
    Line.UNAVAILABLE: (CallStatus.FAILED, CallReason.GENERAL_ERROR),
    Line.HANGS_UP: (CallStatus.ANSWERED, CallReason.CALLER_HANG_UP),
    Line.SILENT: (CallStatus.FAILED, CallReason.GENERAL_ERROR),
}
ANSWERING = {Line.ANSWERED, Line.HANGS_UP}


def pcm(seconds: float) -> bytes:
    """Silence: 8 kHz 16-bit mono."""
    return bytes(int(16_000 * seconds))


# --- what a test needs from an implementation and its far end ---------------------------------------------


class Harness:
    """Starts the trunk under test and speaks for its far end. What an implementation cannot show is in
    `lacks`, with the reason; `need` skips a test with it."""

    name: str
    lacks: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self.started: list[Trunk] = []
        self._ids = itertools.count(1)

    async def start(self) -> Trunk:
        trunk = self._make()
        await trunk.start()
        self.started.append(trunk)
        return trunk

    async def close(self) -> None:
        for trunk in self.started:
            await trunk.stop()

    def need(self, capability: str) -> None:
        if capability in self.lacks:
            pytest.skip(f"{self.name}: {self.lacks[capability]}")

    def _make(self) -> Trunk:
        raise NotImplementedError

    def number(self, line: Line) -> str:
        """A number to call for this outcome; a new one each time where the far end tells calls apart by it."""
        raise NotImplementedError

    def call(self, line: Line, *, audio: float = 0.3, ring_timeout: float = 5.0) -> OutboundCall:
        return OutboundCall(next(self._ids), self.number(line), "+15551230000", pcm(audio), ring_timeout)

    async def seen(self, number: str, *, until: str | None = None) -> list[str]:
        """What the far end received on the calls to `number` (methods, and statuses of responses), waiting
        for `until` among them when given."""
        raise NotImplementedError


class SimulatorHarness(Harness):
    name = "simulator"
    lacks: ClassVar[dict[str, str]] = {
        "peer": "the simulator has no far end that sees a CANCEL or a BYE",
        "silent": "the simulator has no number that answers nothing at all",
    }

    def _make(self) -> Trunk:
        return SimulatedTrunk(name="sim", clock=SystemClock(), ring_seconds=0.1, hang_up_after=0.2)

    def number(self, line: Line) -> str:
        return f"+15005550{int(line.value):03d}"


class SipHarness(Harness):
    name = "sip"
    _serials = itertools.count(1)  # over the session: the far end tells calls apart by number

    def __init__(self, sipp: SippPeer) -> None:
        super().__init__()
        self.sipp = sipp
        self.rtp_clock = RtpClock()

    def _make(self) -> Trunk:
        return SipTrunk(
            name="sipp",
            settings=SipTrunkSettings(host=self.sipp.host, port=self.sipp.port, bind_host="127.0.0.1"),
            clock=SystemClock(),
            rtp_clock=self.rtp_clock,
            timers=Timers(t1=0.02),  # Timer B 64·T1 = 1.28 s instead of 32 s
        )

    async def close(self) -> None:
        await super().close()
        await self.rtp_clock.stop()

    def number(self, line: Line) -> str:
        return f"+1617{next(self._serials):05d}{line.value}"

    async def seen(self, number: str, *, until: str | None = None) -> list[str]:
        deadline = time.monotonic() + (TIMEOUT if until else 0)
        while True:
            messages = await asyncio.to_thread(self.sipp.messages)
            call_ids = {
                m.header("Call-ID")
                for m in messages
                if m.direction == "received" and m.method == "INVITE" and f"sip:{number}@" in (m.header("To") or "")
            }
            flow = [
                m.method or str(m.status)
                for m in messages
                if m.direction == "received" and m.header("Call-ID") in call_ids
            ]
            if until is None or until in flow or time.monotonic() > deadline:
                return flow
            await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def conformance_sipp() -> Iterator[SippPeer]:
    """One sipp for the whole session (skips without sipp): every test starts its own trunk and calls
    numbers of its own."""
    peer = SippPeer("uas_by_number", calls=1_000_000, timeout_s=3600, hold_ms=200, silence_ms=2_000)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(params=["simulator", "sip"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h: Harness
    if request.param == "simulator":
        h = SimulatorHarness()
    else:
        h = SipHarness(request.getfixturevalue("conformance_sipp"))
    try:
        yield h
    finally:
        await h.close()


class Answers:
    """An `on_answered` hook that records what it was told."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.event = asyncio.Event()

    def __call__(self, ms: int) -> None:
        self.times.append(ms)
        self.event.set()


async def dial(trunk: Trunk, call: OutboundCall, answers: Answers | None = None) -> CallResult:
    async with asyncio.timeout(TIMEOUT):
        return await trunk.dial(call, on_answered=answers if answers is not None else Answers())


def assert_times(result: CallResult, answers: Answers, *, answered: bool) -> None:
    assert result.call_time is not None
    if answered:
        assert answers.times == [result.answer_time]
        assert result.answer_time is not None and result.call_time <= result.answer_time <= result.end_time
    else:
        assert answers.times == [] and result.answer_time is None
        assert result.call_time <= result.end_time


# --- the line ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", list(Line), ids=[line.name.lower() for line in Line])
async def test_each_outcome_on_the_line_is_a_result(harness: Harness, line: Line) -> None:
    if line is Line.SILENT:
        harness.need("silent")
    trunk = await harness.start()
    answers = Answers()
    # The called party hangs up 0.2 s in, well before 3 s of audio end; ringing gives up after 0.3 s.
    audio, ring_timeout = (3.0 if line is Line.HANGS_UP else 0.3), (0.3 if line is Line.RINGS else 5.0)
    call = harness.call(line, audio=audio, ring_timeout=ring_timeout)

    result = await dial(trunk, call, answers)

    assert (result.status, result.reason) == EXPECTED[line], result.detail
    assert not result.stopped
    assert_times(result, answers, answered=line in ANSWERING)


async def test_calls_at_once_each_get_their_own_result(harness: Harness) -> None:
    trunk = await harness.start()
    lines = [Line.BUSY, Line.ANSWERED, Line.BLOCKED, Line.HANGS_UP, Line.RINGS, Line.UNAVAILABLE, Line.ANSWERED]
    calls = [harness.call(line, audio=3.0 if line is Line.HANGS_UP else 0.3, ring_timeout=0.3) for line in lines]
    hooks = [Answers() for _ in calls]

    results = await asyncio.gather(*(dial(trunk, call, hook) for call, hook in zip(calls, hooks, strict=True)))

    assert [(r.status, r.reason) for r in results] == [EXPECTED[line] for line in lines]
    for result, hook, line in zip(results, hooks, lines, strict=True):
        assert_times(result, hook, answered=line in ANSWERING)


async def test_a_started_trunk_is_up_and_states_its_limits(harness: Harness) -> None:
    trunk = await harness.start()
    assert trunk.up
    assert trunk.max_calls >= 1 and trunk.cps > 0  # kept by the dialer, not by the trunk
    assert isinstance(trunk.simulated, bool) and trunk.name


# --- ending calls -----------------------------------------------------------------------------------------


async def test_stopping_a_ringing_call_ends_it_at_once(harness: Harness) -> None:
    trunk = await harness.start()
    call = harness.call(Line.RINGS, ring_timeout=20.0)
    answers = Answers()
    asyncio.get_running_loop().call_later(0.2, call.request_stop, StopReason.CANCEL)
    started = time.monotonic()

    result = await dial(trunk, call, answers)

    assert result.stopped and time.monotonic() - started < 3.0
    assert answers.times == [] and result.answer_time is None and result.call_time is not None
    if "peer" not in harness.lacks:
        assert "CANCEL" in await harness.seen(call.e164, until="CANCEL")


async def test_stopping_an_answered_call_hangs_up_at_once(harness: Harness) -> None:
    trunk = await harness.start()
    call = harness.call(Line.ANSWERED, audio=20.0)
    answers = Answers()
    dialling = asyncio.create_task(dial(trunk, call, answers))
    async with asyncio.timeout(TIMEOUT):
        await answers.event.wait()
    await asyncio.sleep(0.2)
    call.request_stop(StopReason.CANCEL)
    started = time.monotonic()

    result = await dialling

    assert result.stopped and time.monotonic() - started < 3.0
    assert answers.times == [result.answer_time]
    if "peer" not in harness.lacks:
        assert "BYE" in await harness.seen(call.e164, until="BYE")


async def test_a_call_stopped_before_it_is_dialled_is_never_placed(harness: Harness) -> None:
    trunk = await harness.start()
    call = harness.call(Line.ANSWERED)
    call.request_stop(StopReason.SHUTDOWN)
    answers = Answers()

    result = await dial(trunk, call, answers)

    assert result.stopped
    assert (result.call_time, result.answer_time, answers.times) == (None, None, [])
    if "peer" not in harness.lacks:
        await asyncio.sleep(QUIET)
        assert await harness.seen(call.e164) == []


async def test_stopping_the_trunk_ends_the_calls_under_way(harness: Harness) -> None:
    trunk = await harness.start()
    ringing = harness.call(Line.RINGS, ring_timeout=20.0)
    answered = harness.call(Line.ANSWERED, audio=20.0)
    answers = Answers()
    dials = [
        asyncio.create_task(dial(trunk, ringing)),
        asyncio.create_task(dial(trunk, answered, answers)),
    ]
    async with asyncio.timeout(TIMEOUT):
        await answers.event.wait()
    await asyncio.sleep(0.2)
    started = time.monotonic()

    await asyncio.wait_for(trunk.stop(), TIMEOUT)
    results = await asyncio.gather(*dials)

    assert time.monotonic() - started < 3.0
    assert [r.stopped for r in results] == [True, True]
    assert results[0].answer_time is None and results[1].answer_time == answers.times[0]
    if "peer" not in harness.lacks:
        assert "CANCEL" in await harness.seen(ringing.e164, until="CANCEL")
        assert "BYE" in await harness.seen(answered.e164, until="BYE")
