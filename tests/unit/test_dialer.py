"""The dialer with the simulator trunk over a real SQLite store: outcomes, call records, trunk limits, cancels,
calls abandoned by a dead dialer, audio that cannot be prepared, and shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from switchboard.domain.clock import SystemClock
from switchboard.domain.ids import IdGenerator
from switchboard.domain.routing import Route, Router
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.store import migrate
from switchboard.store.records import Account, CallProgress, CallView, NewCall, NewCallRequest
from switchboard.store.sqlite import SqliteStore
from switchboard.voice import tts
from switchboard.voice.dialer import ABANDONED, Dialer, DialerSettings
from switchboard.voice.prompts import AudioLibrary
from switchboard.voice.simulator import SimulatedTrunk
from switchboard.voice.trunk import AnsweredHook, CallResult, OutboundCall, Trunk

ACCOUNT = Account(1, "acme", None, "https://example.com/cdr", "whsec_x", 0)
AUDIO_SECONDS = 0.4


class ToneEngine:
    """A text-to-speech engine that speaks every text as a short tone (en-US only); counts its renders."""

    name = "tone"
    version = "1"

    def __init__(self, *, fail: bool = False) -> None:
        self.renders = 0
        self.fail = fail

    def locale_voice(self, locale: str) -> str | None:
        return "tone" if locale == "en-US" else None

    def locales(self) -> list[str]:
        return ["en-US"]

    async def render(self, text: str, *, locale: str, voice: str | None = None) -> tts.Rendered:
        self.renders += 1
        if self.fail:
            raise tts.RenderFailed("the engine is broken")
        t = np.arange(int(16_000 * AUDIO_SECONDS)) / 16_000
        return tts.Rendered(samples=(np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16), rate=16_000)

    def close(self) -> None:
        return None


class Counting:
    """Wraps a trunk and records how many of its calls run at once, and when each was dialled."""

    def __init__(self, trunk: SimulatedTrunk) -> None:
        self._trunk = trunk
        self.name = trunk.name
        self.simulated = True
        self.max_calls = trunk.max_calls
        self.cps = trunk.cps
        self.now = 0
        self.most = 0
        self.started: list[float] = []

    @property
    def up(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def dial(self, call: OutboundCall, *, on_answered: AnsweredHook) -> CallResult:
        self.started.append(asyncio.get_running_loop().time())
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self._trunk.dial(call, on_answered=on_answered)
        finally:
            self.now -= 1


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    url = f"sqlite:///{tmp_path / 'sb.db'}"
    migrate.upgrade(url)
    s = SqliteStore.from_url(url)
    await s.open()
    await s.create_account(ACCOUNT)
    yield s
    await s.close()


def make_dialer(
    store: SqliteStore, tmp_path: Path, trunk: Trunk, *, engine: ToneEngine | None = None, **settings: float
) -> Dialer:
    audio = AudioLibrary(engine=engine or ToneEngine(), cache=tts.TtsCache(tmp_path / "tts"), store=store)
    router: Router[Trunk] = Router(carriers=[trunk], routes=[Route(trunk.name)], country_of=lambda _: None)
    return Dialer(
        store=store,
        router=router,
        audio=audio,
        clock=SystemClock(),
        settings=DialerSettings(poll_interval=0.05, cancel_poll=0.05, **settings),  # type: ignore[arg-type]
    )


def simulator(**kwargs: float) -> SimulatedTrunk:
    options = {"ring_seconds": 0.05, "hang_up_after": 0.1, **kwargs}
    return SimulatedTrunk(name="sim", clock=SystemClock(), **options)  # type: ignore[arg-type]


async def place(store: SqliteStore, numbers: list[str], *, ring_timeout: int = 5, callback: str = "yes") -> int:
    ids = IdGenerator(node=0, clock_ms=SystemClock().now_ms)
    request_id = ids.block(len(numbers) + 1)
    request = NewCallRequest(
        id=request_id,
        account_id=1,
        reference_id="ref-1",
        sender="+14155550100",
        message="Your code is 1234",
        locale="en-US",
        campaign_id=None,
        callback=callback,
        callback_url=None,
        ring_timeout=ring_timeout,
        destination_count=len(numbers),
        created_at=SystemClock().now_ms(),
        idempotency_key=None,
    )
    calls = [NewCall(n, n, f"00000000-0000-4000-8000-{i:012d}") for i, n in enumerate(numbers)]
    return await store.accept_calls(request, calls)


async def ended(store: SqliteStore, request_id: int, *, within: float = 10.0) -> list[CallView]:
    async with asyncio.timeout(within):
        while True:
            view = await store.get_call_request(1, request_id)
            assert view is not None
            if all(c.status.terminal for c in view.calls):
                return view.calls
            await asyncio.sleep(0.02)


async def dialled(dialer: Dialer) -> None:
    """Until the dialer has placed a call."""
    async with asyncio.timeout(5):
        while dialer.placed == 0:  # noqa: ASYNC110 (a count, no event to wait on)
            await asyncio.sleep(0.02)


async def records(store: SqliteStore) -> dict[str, dict[str, str]]:
    """The call records in the outbox, by GUID."""
    views = await store.list_callbacks(1, state=None, limit=100)
    return {json.loads(v.body)["GUID"]: json.loads(v.body) for v in views if v.kind == "voice"}


async def test_each_reserved_number_ends_as_the_contract_says_with_its_record(
    store: SqliteStore, tmp_path: Path
) -> None:
    dialer = make_dialer(store, tmp_path, simulator())
    await dialer.start()
    try:
        numbers = [f"+15005550{n:03d}" for n in range(6)] + ["+4915112345678"]
        request_id = await place(store, numbers, ring_timeout=5)
        dialer.wake()
        calls = await ended(store, request_id)
    finally:
        await dialer.stop()
    got = {c.mobile_no: (c.status, c.reason) for c in calls}
    assert got == {
        "+15005550000": (CallStatus.ANSWERED, "NA"),
        "+15005550001": (CallStatus.BUSY, "NA"),
        "+15005550002": (CallStatus.NO_ANSWER, "Timeout"),
        "+15005550003": (CallStatus.FAILED, "Blocked"),
        "+15005550004": (CallStatus.FAILED, "General Error"),
        "+15005550005": (CallStatus.ANSWERED, "CallerHangUp"),
        "+4915112345678": (CallStatus.ANSWERED, "NA"),
    }
    cdrs = await records(store)
    assert len(cdrs) == 7
    answered = next(c for c in calls if c.mobile_no == "+15005550000")
    cdr = cdrs[answered.guid]
    keys = ["GUID", "MobileNo", "Status", "Calltime", "AnswerTime", "Duration", "Reason", "ID", "ReferenceID"]
    assert list(cdr) == keys
    assert cdr["Status"] == "Answered" and cdr["Reason"] == "NA" and cdr["ID"] == str(request_id)
    assert cdr["Calltime"] and cdr["AnswerTime"] and cdr["Duration"] == "0"  # 0.4 s of audio: 0 whole seconds
    assert answered.answer_time is not None and answered.call_time is not None
    assert answered.end_time is not None and answered.end_time - answered.answer_time >= AUDIO_SECONDS * 1000 * 0.9
    busy = next(c for c in calls if c.mobile_no == "+15005550001")
    assert cdrs[busy.guid]["AnswerTime"] == "" and busy.trunk == "sim"


async def test_the_trunk_limits_queue_calls_rather_than_refuse_them(store: SqliteStore, tmp_path: Path) -> None:
    trunk = Counting(simulator(max_calls=2, cps=20))
    dialer = make_dialer(store, tmp_path, trunk)
    await dialer.start()
    try:
        request_id = await place(store, [f"+4915112345{n:03d}" for n in range(8)])
        dialer.wake()
        calls = await ended(store, request_id, within=20)
    finally:
        await dialer.stop()
    assert [c.status for c in calls] == [CallStatus.ANSWERED] * 8
    assert trunk.most == 2  # never more than max_calls at once, and every call was made
    gaps = np.diff(sorted(trunk.started))
    assert len(gaps) == 7 and gaps.min() >= 0.9 / 20  # paced to 20 setups a second (with scheduling slack)


async def test_speech_is_rendered_once_for_every_call_of_a_request(store: SqliteStore, tmp_path: Path) -> None:
    engine = ToneEngine()
    dialer = make_dialer(store, tmp_path, simulator(), engine=engine)
    await dialer.start()
    try:
        request_id = await place(store, [f"+4915112345{n:03d}" for n in range(5)])
        dialer.wake()
        await ended(store, request_id)
    finally:
        await dialer.stop()
    assert engine.renders == 1


async def test_a_call_is_failed_with_general_error_when_its_audio_cannot_be_prepared(
    store: SqliteStore, tmp_path: Path
) -> None:
    dialer = make_dialer(store, tmp_path, simulator(), engine=ToneEngine(fail=True))
    await dialer.start()
    try:
        request_id = await place(store, ["+4915112345678"])
        dialer.wake()
        [call] = await ended(store, request_id)
    finally:
        await dialer.stop()
    assert (call.status, call.reason) == (CallStatus.FAILED, CallReason.GENERAL_ERROR)
    assert call.call_time is None and call.detail is not None and "audio" in call.detail


async def test_cancel_through_the_store_hangs_up_a_ringing_call_as_failed_cancel(
    store: SqliteStore, tmp_path: Path
) -> None:
    dialer = make_dialer(store, tmp_path, simulator())
    await dialer.start()
    try:
        request_id = await place(store, ["+15005550002"], ring_timeout=30)  # rings until its timeout
        dialer.wake()
        await dialled(dialer)
        result = await store.cancel_calls(1, request_id, now=SystemClock().now_ms())
        assert result is not None and result.stopping == 1
        dialer.wake()
        [call] = await ended(store, request_id, within=3)  # not the 30 s of ringing
    finally:
        await dialer.stop()
    assert (call.status, call.reason) == (CallStatus.FAILED, CallReason.CANCEL)
    assert (await records(store))[call.guid]["Reason"] == "Cancel"


async def test_a_call_whose_dialer_died_mid_call_is_ended_as_general_error_not_dialled_again(
    store: SqliteStore, tmp_path: Path
) -> None:
    request_id = await place(store, ["+4915112345678"])
    now = SystemClock().now_ms()
    [claimed] = await store.claim_calls(now=now, limit=10, lease_ms=1000)
    # The dead dialer got as far as dialling; its lease ran out a moment ago.
    await store.progress_calls([CallProgress(claimed.id, claimed.attempt, CallStatus.DIALING, now, "sim", now - 1)])
    trunk = Counting(simulator())
    dialer = make_dialer(store, tmp_path, trunk)
    await dialer.start()
    try:
        dialer.wake()
        [call] = await ended(store, request_id)
    finally:
        await dialer.stop()
    assert (call.status, call.reason, call.detail) == (CallStatus.FAILED, CallReason.GENERAL_ERROR, ABANDONED)
    assert trunk.started == []  # never dialled twice
    assert call.call_time == now


async def test_stopping_hangs_up_calls_that_outlast_the_grace_period(store: SqliteStore, tmp_path: Path) -> None:
    dialer = make_dialer(store, tmp_path, simulator(), stop_grace=0.2)
    await dialer.start()
    request_id = await place(store, ["+15005550002"], ring_timeout=60)
    dialer.wake()
    await dialled(dialer)
    async with asyncio.timeout(3):
        await dialer.stop()
    [call] = await ended(store, request_id, within=1)
    assert (call.status, call.reason) == (CallStatus.FAILED, CallReason.GENERAL_ERROR)
    assert call.detail == "the gateway stopped during the call"
