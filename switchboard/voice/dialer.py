"""The dialer: claims queued calls from the store, prepares their audio, places each through its trunk within
the trunk's limits, and writes how each ended together with its call record.

Limits queue rather than reject: the dialer claims only as many calls as its trunks have free channels, and
paces call setups to each trunk's `cps`. A call is written Dialing before its INVITE goes out, with a lease
long enough for the whole call; if the dialer dies, the call comes back to a dialer once that lease has run
out and is ended as Failed / General Error. It is never dialled twice: a claim that lost its lease to
another dialer is not applied, and its call is not placed. A call this dialer claims again while it still
holds it (its lease ran out while it waited for its turn) stays with the task that holds it, under the newer
claim.

Stopping hangs up the calls under way after a grace period; calls claimed but not dialled yet are not dialled
and not ended: they stay queued, and the next dialer dials them once their claim has run out. The end of a
call is written again for a while when the store fails, so that a short outage does not turn an answered call
into an abandoned one.

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
from switchboard.errors import PromptError, StoreError
from switchboard.store.base import Store
from switchboard.store.records import CallEnd, CallProgress, ClaimedCall
from switchboard.voice.prompts import AudioLibrary
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
    end_retry: float = 60.0
    """How long the end of a call is written again while the store fails (then its lease decides)."""


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
        """Set when calls were stored (`wake`) or a channel was freed: the claim loop looks now."""
        self._look_for_cancels = asyncio.Event()
        self._calls: dict[int, OutboundCall] = {}
        """Calls under way (audio ready, being placed or on the line), by call id."""
        self._claims: dict[int, ClaimedCall] = {}
        """The newest claim of every call a task here holds, by call id: its attempt is the one to write with."""
        self._placing: set[int] = set()
        """Calls whose Dialing is being written or written: stopping hangs them up, rather than leaving them."""
        self._stopping = False
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
        """Stop claiming; leave the calls not dialled yet for the next dialer; give calls under way
        `stop_grace` seconds to end, then hang them up; write every end; stop the trunks."""
        self._stopping = True
        for task in (self._claiming, self._watching):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for call_id, call in self._calls.items():
            if call_id not in self._placing:
                call.request_stop(StopReason.SHUTDOWN)  # waiting for its turn: no call is placed now
        if self._tasks:
            tasks = set(self._tasks)
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(asyncio.wait(tasks), self._settings.stop_grace)
            pending = {t for t in tasks if not t.done()}
            if pending:
                log.warning("hanging up %d calls under way: the gateway is stopping", len(self._calls))
                for call in self._calls.values():
                    call.request_stop(StopReason.SHUTDOWN)
                await asyncio.wait(pending)
        if self._writes:
            await asyncio.wait(self._writes)
        for state in self._trunks.values():
            await state.trunk.stop()

    def _free_channels(self) -> int:
        return sum(max(0, s.trunk.max_calls - s.active) for s in self._trunks.values() if s.trunk.up)

    async def _claim_loop(self) -> None:
        s = self._settings
        while True:
            self._wake.clear()
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
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(self._wake.wait(), s.poll_interval)

    def _waiting(self) -> int:
        """Claimed calls not yet holding a channel (preparing audio or waiting for their trunk)."""
        return len(self._tasks) - sum(s.active for s in self._trunks.values())

    def _spawn(self, claimed: ClaimedCall) -> None:
        if claimed.id in self._claims:
            # Held here already: its lease ran out while it waited for its turn (or while it was under way).
            # Its task goes on under the new claim (and sees its status: one that is not Received any more was
            # dialled by another dialer meanwhile); a second task would end it as abandoned, or lose it.
            self._claims[claimed.id] = claimed
            return
        self._claims[claimed.id] = claimed
        task = asyncio.create_task(self._run(claimed), name=f"call-{claimed.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _attempt(self, c: ClaimedCall) -> int:
        """The attempt of the newest claim of `c` held here."""
        return self._claims.get(c.id, c).attempt

    async def _run(self, c: ClaimedCall) -> None:
        try:
            await self._place(c)
        except StoreError as e:
            # Not an outcome of the call: it stays as the store has it, and its lease decides (dialled by the
            # next claim if it was not dialled yet, else ended as abandoned).
            log.warning("call %d left to its lease: the store failed (%s)", c.id, e)
        except Exception:
            log.exception("call %d failed unexpectedly", c.id)
            with contextlib.suppress(Exception):
                await self._end(c, CallStatus.FAILED, CallReason.GENERAL_ERROR, detail="internal error", retry=False)
        finally:
            self._calls.pop(c.id, None)
            self._claims.pop(c.id, None)
            self._placing.discard(c.id)

    async def _place(self, c: ClaimedCall) -> None:
        if c.status is not CallStatus.RECEIVED:
            await self._abandoned(c)
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
        if self._stopping:
            return  # not dialled: queued for the next dialer once this claim runs out
        call = OutboundCall(call_id=c.id, e164=c.e164, caller=c.sender, audio=pcm, ring_timeout=c.ring_timeout)
        self._calls[c.id] = call
        state = self._trunks[trunk.name]
        async with state.channels:
            state.active += 1
            try:
                await self._dial(c, call, state)
            finally:
                state.active -= 1
                self._wake.set()  # a channel is free

    async def _abandoned(self, c: ClaimedCall) -> None:
        """End a call whose dialer died mid-call. If it was being cancelled, the cancel is what the client asked
        for."""
        # When it really ended is not known: the last moment known is taken, so the record never claims a
        # Duration nobody measured (an answered call shows its AnswerTime and a Duration of 0).
        last_known = c.answer_time or c.call_time
        reason = CallReason.CANCEL if c.id in await self._store.cancels_requested([c.id]) else CallReason.GENERAL_ERROR
        await self._end(c, CallStatus.FAILED, reason, detail=ABANDONED, end_time=last_known)

    async def _dial(self, c: ClaimedCall, call: OutboundCall, state: _TrunkState) -> None:
        wait = state.pace.take(1)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(call.stop.wait(), wait)
        if call.stop.is_set():  # cancelled (or stopping) before it was dialled
            if call.stop_reason is StopReason.CANCEL:
                await self._end(c, *self._stopped_as(call), detail=None)
            return  # stopping: not dialled, queued for the next dialer once this claim runs out
        if self._claims.get(c.id, c).status is not CallStatus.RECEIVED:
            await self._abandoned(c)  # claimed and dialled elsewhere while it waited here, that dialer died
            return
        self._placing.add(c.id)
        now = self._clock.now_ms()
        lease_until = now + int((c.ring_timeout + call.audio_seconds) * 1000) + self._settings.call_margin_ms
        while True:
            attempt = self._attempt(c)
            applied = await self._store.progress_calls(
                [CallProgress(c.id, attempt, CallStatus.DIALING, now, state.trunk.name, lease_until)]
            )
            if c.id in applied:
                break
            latest = self._claims.get(c.id, c)
            if latest.attempt == attempt or latest.status is not CallStatus.RECEIVED:
                self._placing.discard(c.id)
                log.warning("call %d was claimed again elsewhere, or ended; not dialling it", c.id)
                return
            # Claimed again here meanwhile, still not dialled: write under that claim.
        self.placed += 1

        def answered(at: int) -> None:
            progress = CallProgress(c.id, self._attempt(c), CallStatus.IN_PROGRESS, at, state.trunk.name, lease_until)
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
        retry: bool = True,
        end_time: int | None = None,
    ) -> None:
        """Write how the call ended, with its record; again and again for `end_retry` seconds while the store
        fails (unless not `retry`), then raise."""
        end = CallEnd(
            call_id=c.id,
            attempt=self._attempt(c),
            status=status,
            reason=reason,
            end_time=result.end_time if result is not None else end_time or self._clock.now_ms(),
            call_time=None if result is None else result.call_time,
            answer_time=None if result is None else result.answer_time,
            trunk=None,
            detail=detail,
        )
        give_up, pause = self._clock.monotonic() + self._settings.end_retry, 0.1
        while True:
            try:
                await self._store.end_calls([end._replace(attempt=self._attempt(c))])
                break
            except StoreError as e:
                if not retry or self._clock.monotonic() + pause > give_up:
                    raise
                log.warning("writing the end of call %d failed (%s); trying again in %.1f s", c.id, e, pause)
                await self._clock.sleep(pause)
                pause = min(pause * 2, 5.0)
        self._on_written()

    def _written(self, task: asyncio.Task[list[int]]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("recording an answered call failed: %s", task.exception())

    async def _cancel_loop(self) -> None:
        """Hand cancels made through the API to the calls under way here."""
        while True:
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(self._look_for_cancels.wait(), self._settings.cancel_poll)
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
