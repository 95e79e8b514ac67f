"""The dialer with the simulator trunk over a real SQLite store: outcomes, call records, trunk limits, cancels,
calls abandoned by a dead dialer, claims that outlive their lease, store failures, audio that cannot be prepared,
the audio kept in memory, and shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from switchboard.domain.ids import IdGenerator
from switchboard.domain.routing import Route, Router
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.errors import PromptError, RenderFailed, StoreError, TtsError
from switchboard.store import migrate
from switchboard.store.records import Account, CallEnd, CallProgress, CallView, Campaign, NewCall, NewCallRequest
from switchboard.store.sqlite import SqliteStore
from switchboard.voice import tts
from switchboard.voice.dialer import ABANDONED, Dialer, DialerSettings
from switchboard.voice.prompts import AudioLibrary
from switchboard.voice.simulator import SimulatedTrunk
from switchboard.voice.trunk import AnsweredHook, CallResult, OutboundCall, Trunk
from tests.clock import FakeClock, held

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
            raise RenderFailed("the engine is broken")
        t = np.arange(int(16_000 * AUDIO_SECONDS)) / 16_000
        return tts.Rendered(samples=(np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16), rate=16_000)

    def close(self) -> None:
        return None


class Counting:
    """Wraps a trunk and records how many of its calls run at once, and when each was dialled."""

    def __init__(self, trunk: SimulatedTrunk, clock: FakeClock) -> None:
        self._trunk = trunk
        self._clock = clock
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
        self.started.append(self._clock.monotonic())
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self._trunk.dial(call, on_answered=on_answered)
        finally:
            self.now -= 1


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


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
    store: SqliteStore,
    tmp_path: Path,
    clock: FakeClock,
    trunk: Trunk,
    *,
    engine: ToneEngine | None = None,
    **settings: float,
) -> Dialer:
    """A dialer on the fake clock; the clock waits for its store and its audio (they use threads)."""
    audio = AudioLibrary(engine=engine or ToneEngine(), cache=tts.TtsCache(tmp_path / "tts"), store=store)
    router: Router[Trunk] = Router(carriers=[trunk], routes=[Route(trunk.name)], country_of=lambda _: None)
    return Dialer(
        store=held(store, clock),
        router=router,
        audio=held(audio, clock),
        clock=clock,
        settings=DialerSettings(poll_interval=0.05, cancel_poll=0.05, **settings),  # type: ignore[arg-type]
    )


def simulator(clock: FakeClock, **kwargs: float) -> SimulatedTrunk:
    options = {"ring_seconds": 0.05, "hang_up_after": 0.1, **kwargs}
    return SimulatedTrunk(name="sim", clock=clock, **options)  # type: ignore[arg-type]


async def place(
    store: SqliteStore, clock: FakeClock, numbers: list[str], *, ring_timeout: int = 5, callback: str = "yes"
) -> int:
    ids = IdGenerator(node=0, clock_ms=clock.now_ms)
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
        created_at=clock.now_ms(),
        idempotency_key=None,
    )
    calls = [NewCall(n, n, f"00000000-0000-4000-8000-{i:012d}") for i, n in enumerate(numbers)]
    return await store.accept_calls(request, calls)


async def ended(clock: FakeClock, store: SqliteStore, request_id: int, *, within: float = 10.0) -> list[CallView]:
    """The request's calls once all have ended, letting at most `within` seconds of fake time pass."""
    calls: list[CallView] = []

    async def all_ended() -> bool:
        nonlocal calls
        view = await store.get_call_request(1, request_id)
        assert view is not None
        calls = view.calls
        return all(c.status.terminal for c in calls)

    await clock.run_until(all_ended, within=within)
    return calls


async def dialled(clock: FakeClock, dialer: Dialer) -> None:
    """Until the dialer has placed a call."""
    await clock.run_until(lambda: dialer.placed > 0, within=5)


async def stop(clock: FakeClock, dialer: Dialer, *, within: float = 60.0) -> None:
    """Stop the dialer, letting fake time pass for its stop grace."""
    stopping = asyncio.ensure_future(dialer.stop())
    await clock.run_until(stopping.done, within=within)
    await stopping


async def records(store: SqliteStore) -> dict[str, dict[str, str]]:
    """The call records in the outbox, by GUID."""
    views = await store.list_callbacks(1, state=None, limit=100)
    return {json.loads(v.body)["GUID"]: json.loads(v.body) for v in views if v.kind == "voice"}


async def test_each_reserved_number_ends_as_the_contract_says_with_its_record(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    dialer = make_dialer(store, tmp_path, clock, simulator(clock))
    await dialer.start()
    try:
        numbers = [f"+15005550{n:03d}" for n in range(6)] + ["+4915112345678"]
        request_id = await place(store, clock, numbers, ring_timeout=5)
        dialer.wake()
        calls = await ended(clock, store, request_id)
    finally:
        await stop(clock, dialer)
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
    assert answered.end_time is not None and answered.end_time - answered.answer_time >= AUDIO_SECONDS * 1000
    busy = next(c for c in calls if c.mobile_no == "+15005550001")
    assert cdrs[busy.guid]["AnswerTime"] == "" and busy.trunk == "sim"


async def test_the_trunk_limits_queue_calls_rather_than_refuse_them(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    trunk = Counting(simulator(clock, max_calls=2, cps=20), clock)
    dialer = make_dialer(store, tmp_path, clock, trunk)
    await dialer.start()
    try:
        request_id = await place(store, clock, [f"+4915112345{n:03d}" for n in range(8)])
        dialer.wake()
        calls = await ended(clock, store, request_id, within=20)
    finally:
        await stop(clock, dialer)
    assert [c.status for c in calls] == [CallStatus.ANSWERED] * 8
    assert trunk.most == 2  # never more than max_calls at once, and every call was made
    # Paced to 20 setups a second: the k-th starts k/20 s after the first at the soonest. Counted from the first
    # (not between neighbours), so that one start delayed by its Dialing write does not make the next look early.
    started = sorted(trunk.started)
    assert len(started) == 8
    assert all(t - started[0] >= k / 20 - 1e-6 for k, t in enumerate(started)), np.diff(started)


async def test_speech_is_rendered_once_for_every_call_of_a_request(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    engine = ToneEngine()
    dialer = make_dialer(store, tmp_path, clock, simulator(clock), engine=engine)
    await dialer.start()
    try:
        request_id = await place(store, clock, [f"+4915112345{n:03d}" for n in range(5)])
        dialer.wake()
        await ended(clock, store, request_id)
    finally:
        await stop(clock, dialer)
    assert engine.renders == 1


async def test_a_call_is_failed_with_general_error_when_its_audio_cannot_be_prepared(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    dialer = make_dialer(store, tmp_path, clock, simulator(clock), engine=ToneEngine(fail=True))
    await dialer.start()
    try:
        request_id = await place(store, clock, ["+4915112345678"])
        dialer.wake()
        [call] = await ended(clock, store, request_id)
    finally:
        await stop(clock, dialer)
    assert (call.status, call.reason) == (CallStatus.FAILED, CallReason.GENERAL_ERROR)
    assert call.call_time is None and call.detail is not None and "audio" in call.detail


async def test_cancel_through_the_store_hangs_up_a_ringing_call_as_failed_cancel(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    dialer = make_dialer(store, tmp_path, clock, simulator(clock))
    await dialer.start()
    try:
        request_id = await place(store, clock, ["+15005550002"], ring_timeout=30)  # rings until its timeout
        dialer.wake()
        await dialled(clock, dialer)
        result = await store.cancel_calls(1, request_id, now=clock.now_ms())
        assert result is not None and result.stopping == 1
        dialer.wake()
        [call] = await ended(clock, store, request_id, within=3)  # not the 30 s of ringing
    finally:
        await stop(clock, dialer)
    assert (call.status, call.reason) == (CallStatus.FAILED, CallReason.CANCEL)
    assert (await records(store))[call.guid]["Reason"] == "Cancel"


async def test_a_call_whose_dialer_died_mid_call_is_ended_as_general_error_not_dialled_again(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    request_id = await place(store, clock, ["+4915112345678"])
    now = clock.now_ms()
    [claimed] = await store.claim_calls(now=now, limit=10, lease_ms=1000)
    # The dead dialer got as far as dialling; its lease ran out a moment ago.
    await store.progress_calls([CallProgress(claimed.id, claimed.attempt, CallStatus.DIALING, now, "sim", now - 1)])
    trunk = Counting(simulator(clock), clock)
    dialer = make_dialer(store, tmp_path, clock, trunk)
    await dialer.start()
    try:
        dialer.wake()
        [call] = await ended(clock, store, request_id)
    finally:
        await stop(clock, dialer)
    assert (call.status, call.reason, call.detail) == (CallStatus.FAILED, CallReason.GENERAL_ERROR, ABANDONED)
    assert trunk.started == []  # never dialled twice
    assert call.call_time == now


async def test_a_call_abandoned_after_its_answer_claims_no_duration_nobody_measured(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    request_id = await place(store, clock, ["+4915112345678"])
    now = clock.now_ms()
    [claimed] = await store.claim_calls(now=now, limit=10, lease_ms=1000)
    # Dialled 90 s ago, answered 85 s ago; the dialer died, and its lease ran out a moment ago.
    dialing = CallProgress(claimed.id, claimed.attempt, CallStatus.DIALING, now - 90_000, "sim", now - 1)
    answered = CallProgress(claimed.id, claimed.attempt, CallStatus.IN_PROGRESS, now - 85_000, "sim", now - 1)
    await store.progress_calls([dialing])
    await store.progress_calls([answered])
    dialer = make_dialer(store, tmp_path, clock, simulator(clock))
    await dialer.start()
    try:
        dialer.wake()
        [call] = await ended(clock, store, request_id)
    finally:
        await stop(clock, dialer)
    assert (call.status, call.reason, call.detail) == (CallStatus.FAILED, CallReason.GENERAL_ERROR, ABANDONED)
    assert (call.call_time, call.answer_time, call.end_time) == (now - 90_000, now - 85_000, now - 85_000)
    assert call.duration == 0 and (await records(store))[call.guid]["Duration"] == "0"


async def test_stopping_hangs_up_calls_that_outlast_the_grace_period(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    dialer = make_dialer(store, tmp_path, clock, simulator(clock), stop_grace=0.2)
    await dialer.start()
    request_id = await place(store, clock, ["+15005550002"], ring_timeout=60)
    dialer.wake()
    await dialled(clock, dialer)
    stopping_at = clock.monotonic()
    await stop(clock, dialer, within=3)
    assert clock.monotonic() - stopping_at == pytest.approx(0.2)  # hung up when the grace ran out, not before
    [call] = await ended(clock, store, request_id, within=1)
    assert (call.status, call.reason) == (CallStatus.FAILED, CallReason.GENERAL_ERROR)
    assert call.detail == "the gateway stopped during the call"


async def test_stopping_leaves_calls_not_yet_dialled_queued_for_the_next_dialer(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    trunk = Counting(simulator(clock, cps=1), clock)  # the second call waits a second for its turn
    dialer = make_dialer(store, tmp_path, clock, trunk, stop_grace=0.3, claim_lease_ms=500)
    await dialer.start()
    request_id = await place(store, clock, ["+15005550002", "+15005550000"], ring_timeout=60)
    dialer.wake()
    await dialled(clock, dialer)
    await stop(clock, dialer, within=3)
    view = await store.get_call_request(1, request_id)
    assert view is not None
    ringing, waiting = view.calls
    assert (ringing.status, ringing.reason) == (CallStatus.FAILED, CallReason.GENERAL_ERROR)  # hung up
    assert waiting.status is CallStatus.RECEIVED  # never dialled: not failed by a restart
    assert len(trunk.started) == 1 and len(await records(store)) == 1
    # The next dialer dials it once the stopped one's claim has run out.
    after = Counting(simulator(clock), clock)
    restarted = make_dialer(store, tmp_path, clock, after)
    await restarted.start()
    try:
        calls = await ended(clock, store, request_id, within=5)
    finally:
        await stop(clock, restarted)
    assert (calls[1].status, calls[1].reason) == (CallStatus.ANSWERED, CallReason.NA)
    assert len(after.started) == 1 and len(await records(store)) == 2


async def test_a_call_waiting_its_turn_past_its_claim_is_dialled_once_not_claimed_over_and_over(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    # Four setups a second and a claim of 0.2 s: the later calls wait longer than their claim for their turn,
    # so this dialer claims them again meanwhile. They must still be dialled, each once, in about 0.75 s.
    trunk = Counting(simulator(clock, cps=4), clock)
    dialer = make_dialer(store, tmp_path, clock, trunk, claim_lease_ms=200)
    await dialer.start()
    try:
        request_id = await place(store, clock, [f"+4915112345{n:03d}" for n in range(4)], ring_timeout=5)
        dialer.wake()
        calls = await ended(clock, store, request_id, within=5)
    finally:
        await stop(clock, dialer)
    assert [(c.status, c.reason) for c in calls] == [(CallStatus.ANSWERED, CallReason.NA)] * 4
    assert len(trunk.started) == 4
    assert len(await records(store)) == 4


async def test_a_call_claimed_again_while_it_waits_can_still_be_cancelled(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    trunk = Counting(simulator(clock, cps=2), clock)
    dialer = make_dialer(store, tmp_path, clock, trunk, claim_lease_ms=150)
    await dialer.start()
    try:
        # The first rings for a minute; the second waits half a second for its turn, claimed again meanwhile.
        request_id = await place(store, clock, ["+15005550002", "+15005550002"], ring_timeout=60)
        dialer.wake()
        await clock.run_until(lambda: len(trunk.started) == 2, within=5)
        result = await store.cancel_calls(1, request_id, now=clock.now_ms())
        assert result is not None and result.stopping == 2
        dialer.wake()
        ends = await ended(clock, store, request_id, within=3)
    finally:
        await stop(clock, dialer)
    assert [(c.status, c.reason) for c in ends] == [(CallStatus.FAILED, CallReason.CANCEL)] * 2


class FlakyEnds:
    """The store, except that its first `failures` writes of call ends fail (the database blinked)."""

    def __init__(self, store: SqliteStore, failures: int) -> None:
        self._store = store
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def end_calls(self, ends: list[CallEnd]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("database is unreachable")
        await self._store.end_calls(ends)


@pytest.mark.parametrize("failures", [1, 2])
async def test_an_end_that_could_not_be_written_is_written_again_as_it_happened(
    store: SqliteStore, tmp_path: Path, clock: FakeClock, failures: int
) -> None:
    flaky = FlakyEnds(store, failures)
    dialer = make_dialer(flaky, tmp_path, clock, simulator(clock))  # type: ignore[arg-type]
    await dialer.start()
    try:
        request_id = await place(store, clock, ["+15005550000"])
        dialer.wake()
        [call] = await ended(clock, store, request_id, within=5)
    finally:
        await stop(clock, dialer)
    assert (call.status, call.reason) == (CallStatus.ANSWERED, CallReason.NA)  # not Failed: it was answered
    assert flaky.failures == 0 and len(await records(store)) == 1


async def test_a_campaign_is_read_from_the_store_once_for_the_calls_preparing_at_once(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pcm = bytes(range(256)) * 64
    campaign = Campaign("0b5a3c1e-0000-4000-8000-000000000001", 1, "promo", "wav", None, None, 1000, 0)
    await store.create_campaign(campaign, pcm)
    reads = 0
    read = store.campaign_audio

    async def counted(campaign_id: str) -> bytes | None:
        nonlocal reads
        reads += 1
        return await read(campaign_id)

    monkeypatch.setattr(store, "campaign_audio", counted)
    library = AudioLibrary(engine=ToneEngine(), cache=tts.TtsCache(tmp_path / "tts"), store=store)
    got = await asyncio.gather(
        *(library.for_call(message=None, locale=None, campaign_id=campaign.id) for _ in range(50))
    )
    assert reads == 1  # not 50 copies of a recording of up to 9.6 MB in memory at once
    assert all(g == pcm for g in got)
    with pytest.raises(PromptError):
        await library.for_call(message=None, locale=None, campaign_id="0b5a3c1e-0000-4000-8000-000000000002")


async def test_calls_of_one_request_share_one_copy_of_its_speech_and_memory_is_bounded(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = ToneEngine()
    library = AudioLibrary(engine=engine, cache=tts.TtsCache(tmp_path / "tts"), store=store, memory_bytes=20_000)
    first = await library.for_call(message="Your code is 1234", locale="en-US", campaign_id=None)
    later = await library.for_call(message="Your code is 1234", locale="en-US", campaign_id=None)
    assert later is first and engine.renders == 1  # not one copy per call placed as channels free up
    reads: list[str] = []
    read = store.campaign_audio

    async def counted(campaign_id: str) -> bytes | None:
        reads.append(campaign_id)
        return await read(campaign_id)

    monkeypatch.setattr(store, "campaign_audio", counted)
    ids = [f"0b5a3c1e-0000-4000-8000-00000000001{n}" for n in range(3)]
    for n, campaign_id in enumerate(ids):
        await store.create_campaign(Campaign(campaign_id, 1, f"c{n}", "wav", None, None, 500, 0), bytes(8000))
        await library.campaign(campaign_id)
    await library.campaign(ids[2])
    assert reads == ids  # the newest two fit in 20,000 bytes (with the speech evicted) ...
    await library.campaign(ids[0])
    assert reads == [*ids, ids[0]]  # ... the oldest did not


class FlakyProgress:
    """The store, except that its first write of a call's progress fails (the database blinked)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.failures = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def progress_calls(self, changes: list[CallProgress]) -> list[int]:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("database is unreachable")
        return await self._store.progress_calls(changes)


async def test_a_call_the_store_failed_before_it_was_dialled_is_dialled_later_not_failed(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    flaky = FlakyProgress(store)
    trunk = Counting(simulator(clock), clock)
    dialer = make_dialer(flaky, tmp_path, clock, trunk, claim_lease_ms=200)  # type: ignore[arg-type]
    await dialer.start()
    try:
        request_id = await place(store, clock, ["+15005550000"])
        dialer.wake()
        [call] = await ended(clock, store, request_id, within=5)
    finally:
        await stop(clock, dialer)
    assert (call.status, call.reason) == (CallStatus.ANSWERED, CallReason.NA)
    assert flaky.failures == 0 and len(trunk.started) == 1


async def test_a_call_dialled_elsewhere_while_it_waited_here_is_not_dialled_again(
    store: SqliteStore, tmp_path: Path, clock: FakeClock
) -> None:
    trunk = Counting(simulator(clock, cps=1), clock)  # the second call waits a second for its turn
    dialer = make_dialer(store, tmp_path, clock, trunk, claim_lease_ms=5_000, stop_grace=0.1)
    await dialer.start()
    try:
        request_id = await place(store, clock, ["+15005550002", "+15005550000"], ring_timeout=60)
        dialer.wake()
        await dialled(clock, dialer)
        # Meanwhile another dialer took the waiting call over (as if this one's claim had run out), dialled it,
        # and died: its lease has run out too, and this dialer claims it again.
        now = clock.now_ms()
        [other] = await store.claim_calls(now=now + 10_000, limit=10, lease_ms=1_000)
        assert other.mobile_no == "+15005550000"
        await store.progress_calls([CallProgress(other.id, other.attempt, CallStatus.DIALING, now, "sim", now - 1)])
        dialer.wake()
        view = None

        async def second_ended() -> bool:
            nonlocal view
            view = await store.get_call_request(1, request_id)
            return view is not None and view.calls[1].status.terminal

        await clock.run_until(second_ended, within=5)
    finally:
        await stop(clock, dialer)
    assert len(trunk.started) == 1  # the first call only: the other was dialled once, elsewhere
    second = view.calls[1]
    assert (second.status, second.reason, second.detail) == (CallStatus.FAILED, CallReason.GENERAL_ERROR, ABANDONED)


async def test_a_speech_cache_that_cannot_be_written_fails_the_prompt_not_the_dialer(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tts.TtsCache(tmp_path / "tts")

    def disk_full(key: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "put", disk_full)
    library = AudioLibrary(engine=ToneEngine(), cache=cache, store=store)
    with pytest.raises(PromptError, match="speech cache cannot be used") as raised:
        await library.for_call(message="Your code is 1234", locale="en-US", campaign_id=None)
    assert isinstance(raised.value.__cause__, TtsError)  # what the API answers as its 5015
