"""The built-in voice trunk simulator: the default trunk when none is configured, labelled as simulated.

Every number rings for `ring_seconds`, answers, and hears the audio to its end (on its clock's time), except the
reserved test numbers +1 500 555 00NN (ARCHITECTURE.md §3, docs/voice.md):

| NN | outcome |
|---|---|
| 00 | Answered / NA (played to the end) |
| 01 | Busy / NA |
| 02 | NoAnswer / Timeout (rings until the request's RingTimeout) |
| 03 | Failed / Blocked |
| 04 | Failed / General Error |
| 05 | Answered / CallerHangUp (hangs up after `hang_up_after` seconds, or halfway if the audio is shorter) |

As a SIP trunk does, `stop` ends the calls still under way (their results say `stopped`), and a call whose
`stop` is set before it is dialled is not placed (no call time).
"""

from __future__ import annotations

import asyncio
import contextlib

from switchboard.domain.clock import Clock
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.voice.trunk import AnsweredHook, CallResult, OutboundCall

TEST_PREFIX = "+1500555"


class SimulatedTrunk:
    simulated = True

    def __init__(
        self,
        *,
        name: str,
        clock: Clock,
        ring_seconds: float = 1.0,
        hang_up_after: float = 2.0,
        max_calls: int = 500,
        cps: float = 50.0,
    ) -> None:
        self.name = name
        self._clock = clock
        self._ring = ring_seconds
        self._hang_up_after = hang_up_after
        self.max_calls = max_calls
        self.cps = cps
        self._ending = asyncio.Event()
        """Set by `stop`: the calls under way end now (replaced then, for calls dialled after)."""

    @property
    def up(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """End the calls still under way."""
        self._ending.set()
        self._ending = asyncio.Event()

    async def dial(self, call: OutboundCall, *, on_answered: AnsweredHook) -> CallResult:
        if call.stop.is_set():  # stopped before it was placed: it never is
            return self._stopped(None, None)
        call_time = self._clock.now_ms()
        ending = self._ending
        outcome = call.e164[len(TEST_PREFIX) :] if call.e164.startswith(TEST_PREFIX) else ""
        if outcome == "0002":
            if await self._wait(call, ending, call.ring_timeout):
                return self._stopped(call_time, None)
            return self._end(CallStatus.NO_ANSWER, CallReason.TIMEOUT, call_time, None, "simulated: not answered")
        if await self._wait(call, ending, min(self._ring, call.ring_timeout)):
            return self._stopped(call_time, None)
        if outcome == "0001":
            return self._end(CallStatus.BUSY, CallReason.NA, call_time, None, "simulated: busy (SIP 486)")
        if outcome == "0003":
            return self._end(CallStatus.FAILED, CallReason.BLOCKED, call_time, None, "simulated: blocked (SIP 403)")
        if outcome == "0004":
            return self._end(CallStatus.FAILED, CallReason.GENERAL_ERROR, call_time, None, "simulated: SIP 503")
        if self._ring > call.ring_timeout:
            return self._end(CallStatus.NO_ANSWER, CallReason.TIMEOUT, call_time, None, "simulated: not answered")
        answer_time = self._clock.now_ms()
        on_answered(answer_time)
        if outcome == "0005":
            hang_up = min(self._hang_up_after, call.audio_seconds / 2)
            if await self._wait(call, ending, hang_up):
                return self._stopped(call_time, answer_time)
            hung_up = "simulated: the called party hung up"
            return self._end(CallStatus.ANSWERED, CallReason.CALLER_HANG_UP, call_time, answer_time, hung_up)
        if await self._wait(call, ending, call.audio_seconds):
            return self._stopped(call_time, answer_time)
        return self._end(CallStatus.ANSWERED, CallReason.NA, call_time, answer_time, "simulated: played to the end")

    async def _wait(self, call: OutboundCall, ending: asyncio.Event, seconds: float) -> bool:
        """Let `seconds` pass on the clock; True when the call was stopped meanwhile, or the trunk (`ending`)."""

        async def stopped() -> None:
            waiters = [asyncio.ensure_future(call.stop.wait()), asyncio.ensure_future(ending.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

        with contextlib.suppress(TimeoutError):
            await self._clock.wait_for(stopped(), max(0.0, seconds))
        return call.stop.is_set() or ending.is_set()

    def _end(
        self, status: CallStatus, reason: CallReason, call_time: int, answer_time: int | None, detail: str
    ) -> CallResult:
        return CallResult(status, reason, call_time, answer_time, self._clock.now_ms(), detail)

    def _stopped(self, call_time: int | None, answer_time: int | None) -> CallResult:
        status = CallStatus.FAILED
        return CallResult(status, CallReason.GENERAL_ERROR, call_time, answer_time, self._clock.now_ms(), None, True)
