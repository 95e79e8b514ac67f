"""The dialer: claims queued calls from the store, prepares their audio, places each through its trunk within
the trunk's limits, and writes how each ended together with its call record.

Limits queue rather than reject: the dialer claims only as many calls as its trunks have free channels, and
paces call setups to each trunk's `cps`. A call is written Dialing before its INVITE goes out, with a lease
long enough for the whole call; if the dialer dies, the call comes back to a dialer once that lease has run
out and is ended as Failed / General Error. It is never dialled twice: a claim that lost its lease to
another dialer is not applied, and its call is not placed.

Cancels made through the API reach a call under way through the store (`cancels_requested`), looked at
every `cancel_poll` seconds and whenever `wake` is called, so they work across processes in cluster mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from switchboard.domain.clock import Clock
from switchboard.domain.rate import TokenBucket
from switchboard.domain.routing import Router
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.store.base import Store
from switchboard.store.records import CallEnd, CallProgress, ClaimedCall
from switchboard.voice.prompts import AudioLibrary, PromptError
from switchboard.voice.trunk import CallResult, OutboundCall, StopReason, Trunk

log = logging.getLogger("switchboard.voice.dialer")

NO_ROUTE = "no route (no trunk is up for this number)"
INVALID_NUMBER = "International Number Invalid"
ABANDONED = "the dialer handling this call stopped before it ended"
STOPPED = "the gateway stopped during the call"


@dataclass(frozen=True, slots=True)
class DialerSettings:
    batch_size: int = 100
    claim_lease_ms: int = 60_000
    """How long a claimed call may wait for its trunk's pace before it is written Dialing."""
    call_margin_ms: int = 120_000
    """Added to ring timeout plus audio length for the lease of a call under way."""
    poll_interval: float = 1.0
    cancel_poll: float = 1.0
    stop_grace: float = 10.0
    """At shutdown, calls under way get this long to end by themselves before they are hung up."""


class _TrunkState:
    def __init__(self, trunk: Trunk, clock: Clock) -> None:
        self.trunk = trunk
        self.channels = asyncio.Semaphore(trunk.max_calls)
        self.active = 0
        self.pace = TokenBucket(rate=trunk.cps, burst=1, clock=clock)


class Dialer:
    def __init__(
        self,
        *,
        store: Store,
        router: Router[Trunk],
        audio: AudioLibrary,
        clock: Clock,
        settings: DialerSettings,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._router = router
        self._audio = audio
        self._clock = clock
        self._settings = settings
        self._on_written = on_written or (lambda: None)
        """Called after calls ended (their records are in the outbox)."""
        self._trunks = {name: _TrunkState(t, clock) for name, t in router.carriers.items()}
        self._wake = asyncio.Event()
        self._look_for_cancels = asyncio.Event()
        self._freed = asyncio.Event()
        self._calls: dict[int, OutboundCall] = {}
        """Calls under way (audio ready, being placed or on the line), by call id."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Task[list[int]]] = set()
        """InProgress writes in flight (the loop keeps only weak references to tasks)."""
        self._claiming: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self.placed = 0

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    def wake(self) -> None:
        """Calls were just stored, or cancels asked for: look now instead of at the next poll."""
        self._wake.set()
        self._look_for_cancels.set()

    async def start(self) -> None:
        for state in self._trunks.values():
            await state.trunk.start()
        self._claiming = asyncio.create_task(self._claim_loop(), name="voice-claim")
        self._watching = asyncio.create_task(self._cancel_loop(), name="voice-cancels")

    async def stop(self) -> None:
        """Stop claiming; give calls under way `stop_grace` seconds to end, then hang them up; write every
        end; stop the trunks."""
        for task in (self._claiming, self._watching):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self._settings.stop_grace)
            if pending:
                log.warning("hanging up %d calls under way: the gateway is stopping", len(self._calls))
                for call in self._calls.values():
                    call.request_stop(StopReason.SHUTDOWN)
                await asyncio.wait(pending)
        for state in self._trunks.values():
            await state.trunk.stop()

    def _free_channels(self) -> int:
        return sum(max(0, s.trunk.max_calls - s.active) for s in self._trunks.values() if s.trunk.up)

    async def _claim_loop(self) -> None:
        s = self._settings
        while True:
            self._wake.clear()
            self._freed.clear()
            free = min(s.batch_size, self._free_channels() - self._waiting())
            claimed: list[ClaimedCall] = []
            if free > 0:
                try:
                    claimed = await self._store.claim_calls(
                        now=self._clock.now_ms(), limit=free, lease_ms=s.claim_lease_ms
                    )
                except Exception:
                    log.exception("claiming calls failed; trying again")
            for c in claimed:
                self._spawn(c)
            if len(claimed) == free > 0:
                continue  # there may be more due
            waits = [asyncio.create_task(self._wake.wait()), asyncio.create_task(self._freed.wait())]
            try:
                await asyncio.wait(waits, timeout=s.poll_interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    def _waiting(self) -> int:
        """Claimed calls not yet holding a channel (preparing audio or waiting for their trunk)."""
        return len(self._tasks) - sum(s.active for s in self._trunks.values())

    def _spawn(self, claimed: ClaimedCall) -> None:
        task = asyncio.create_task(self._run(claimed), name=f"call-{claimed.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, c: ClaimedCall) -> None:
        try:
            await self._place(c)
        except Exception:
            log.exception("call %d failed unexpectedly", c.id)
            with contextlib.suppress(Exception):
                await self._end(c, CallStatus.FAILED, CallReason.GENERAL_ERROR, detail="internal error")
        finally:
            self._calls.pop(c.id, None)

    async def _place(self, c: ClaimedCall) -> None:
        if c.status is not CallStatus.RECEIVED:
            # Its dialer died mid-call. If it was being cancelled, the cancel is what the client asked for.
            if c.id in await self._store.cancels_requested([c.id]):
                await self._end(c, CallStatus.FAILED, CallReason.CANCEL, detail=ABANDONED)
            else:
                await self._end(c, CallStatus.FAILED, CallReason.GENERAL_ERROR, detail=ABANDONED)
            return
        if c.e164 is None:
            await self._end(c, CallStatus.FAILED, CallReason.GENERAL_ERROR, detail=INVALID_NUMBER)
            return
        trunk = self._router.choose(e164=c.e164, account=c.account_name, sender=c.sender)
        if trunk is None:
            await self._end(c, CallStatus.FAILED, CallReason.GENERAL_ERROR, detail=NO_ROUTE)
            return
        try:
            pcm = await self._audio.for_call(message=c.message, locale=c.locale, campaign_id=c.campaign_id)
        except PromptError as e:
            await self._end(c, CallStatus.FAILED, CallReason.GENERAL_ERROR, detail=f"audio: {e}")
            return
        call = OutboundCall(call_id=c.id, e164=c.e164, caller=c.sender, audio=pcm, ring_timeout=c.ring_timeout)
        self._calls[c.id] = call
        state = self._trunks[trunk.name]
        async with state.channels:
            state.active += 1
            try:
                await self._dial(c, call, state)
            finally:
                state.active -= 1
                self._freed.set()

    async def _dial(self, c: ClaimedCall, call: OutboundCall, state: _TrunkState) -> None:
        wait = state.pace.take(1)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.stop.wait(), wait)
        if call.stop.is_set():  # cancelled (or stopping) before it was dialled
            await self._end(c, *self._stopped_as(call), detail=None)
            return
        now = self._clock.now_ms()
        lease_until = now + int((c.ring_timeout + call.audio_seconds) * 1000) + self._settings.call_margin_ms
        applied = await self._store.progress_calls(
            [CallProgress(c.id, c.attempt, CallStatus.DIALING, now, state.trunk.name, lease_until)]
        )
        if c.id not in applied:
            log.warning("call %d was claimed again elsewhere; not dialling it", c.id)
            return
        self.placed += 1

        def answered(at: int) -> None:
            progress = CallProgress(c.id, c.attempt, CallStatus.IN_PROGRESS, at, state.trunk.name, lease_until)
            task = asyncio.create_task(self._store.progress_calls([progress]))
            self._writes.add(task)
            task.add_done_callback(self._written)

        result = await state.trunk.dial(call, on_answered=answered)
        status, reason = (result.status, result.reason)
        if result.stopped or (call.stop.is_set() and call.stop_reason is StopReason.CANCEL):
            status, reason = self._stopped_as(call)
        await self._end(c, status, reason, detail=result.detail or _stop_detail(call), result=result)

    @staticmethod
    def _stopped_as(call: OutboundCall) -> tuple[CallStatus, CallReason]:
        if call.stop_reason is StopReason.CANCEL:
            return CallStatus.FAILED, CallReason.CANCEL
        return CallStatus.FAILED, CallReason.GENERAL_ERROR

    async def _end(
        self,
        c: ClaimedCall,
        status: CallStatus,
        reason: CallReason,
        *,
        detail: str | None,
        result: CallResult | None = None,
    ) -> None:
        end = CallEnd(
            call_id=c.id,
            attempt=c.attempt,
            status=status,
            reason=reason,
            end_time=result.end_time if result is not None else self._clock.now_ms(),
            call_time=None if result is None else result.call_time,
            answer_time=None if result is None else result.answer_time,
            trunk=None,
            detail=detail,
        )
        await self._store.end_calls([end])
        self._on_written()

    def _written(self, task: asyncio.Task[list[int]]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("recording an answered call failed: %s", task.exception())

    async def _cancel_loop(self) -> None:
        """Hand cancels made through the API to the calls under way here."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._look_for_cancels.wait(), self._settings.cancel_poll)
            self._look_for_cancels.clear()
            if not self._calls:
                continue
            try:
                cancelled = await self._store.cancels_requested(list(self._calls))
            except Exception:
                log.exception("looking for cancels failed; trying again")
                continue
            for call_id in cancelled:
                call = self._calls.get(call_id)
                if call is not None:
                    call.request_stop(StopReason.CANCEL)


def _stop_detail(call: OutboundCall) -> str | None:
    if call.stop_reason is StopReason.CANCEL:
        return "cancelled through the API"
    if call.stop_reason is StopReason.SHUTDOWN:
        return STOPPED
    return None
